//! Rendering a plan's DAG as Graphviz DOT or Mermaid.

use std::fmt::Write;

use super::Plan;

/// Output formats of `scalepipe dag`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GraphFormat {
    Dot,
    Mermaid,
}

/// The plan's instance graph in the given format.
pub fn render(plan: &Plan, format: GraphFormat) -> String {
    let mut out = String::new();
    match format {
        GraphFormat::Dot => {
            let _ = writeln!(out, "digraph \"{}\" {{", escape(&plan.pipeline.name));
            let _ = writeln!(out, "  rankdir=LR;");
            for (i, inst) in plan.instances.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "  n{i} [label=\"{}\\n({})\"];",
                    escape(&inst.id),
                    inst.kind.name
                );
            }
            for (i, inst) in plan.instances.iter().enumerate() {
                for input in &inst.inputs {
                    let _ = writeln!(out, "  n{input} -> n{i};");
                }
            }
            out.push_str("}\n");
        }
        GraphFormat::Mermaid => {
            out.push_str("flowchart LR\n");
            for (i, inst) in plan.instances.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "  n{i}[\"{}<br/>({})\"]",
                    inst.id.replace('"', "#quot;"),
                    inst.kind.name
                );
            }
            for (i, inst) in plan.instances.iter().enumerate() {
                for input in &inst.inputs {
                    let _ = writeln!(out, "  n{input} --> n{i}");
                }
            }
        }
    }
    out
}

fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}
