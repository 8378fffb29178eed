//! The scheduler: which ready instance starts next, within the thread budget.
//!
//! Each instance declares the threads it keeps busy; the scheduler starts a ready
//! instance only while the running ones' threads stay within `--jobs`, so a
//! training stage with its own rayon pool does not oversubscribe the cores, and
//! at most one GPU stage runs at a time. It only counts: the executor spawns
//! what it hands out and reports back what finished.

use std::collections::VecDeque;

use crate::stages::Resources;

/// What an instance asks the scheduler for: threads (clamped to `--jobs`), GPU.
type ResourceClass = (usize, bool);

/// The ready queue and what the running instances hold of the budget.
pub(super) struct Scheduler {
    ready: ReadyQueue,
    /// `--jobs`, at least 1.
    jobs: usize,
    threads_in_use: usize,
    gpu_in_use: bool,
    running: usize,
    /// A cluster's budget: every instance counts one against `jobs` (the
    /// instances in flight), whatever its threads, and GPUs are not exclusive.
    per_instance: bool,
}

impl Scheduler {
    pub(super) fn new(jobs: usize) -> Scheduler {
        Scheduler {
            ready: ReadyQueue::default(),
            jobs: jobs.max(1),
            threads_in_use: 0,
            gpu_in_use: false,
            running: 0,
            per_instance: false,
        }
    }

    /// A scheduler that keeps at most `in_flight` instances started, each
    /// counting one (a cluster places them; `max_jobs` of a Slurm run).
    pub(super) fn per_instance(in_flight: usize) -> Scheduler {
        Scheduler {
            per_instance: true,
            ..Scheduler::new(in_flight)
        }
    }

    /// Threads an instance gets: its request, clamped to `1..=jobs`.
    pub(super) fn threads(&self, resources: Resources) -> usize {
        resources.threads.clamp(1, self.jobs)
    }

    fn class(&self, resources: Resources) -> ResourceClass {
        if self.per_instance {
            return (1, false);
        }
        (self.threads(resources), resources.gpu)
    }

    /// Queues an instance whose inputs are all done.
    pub(super) fn push_ready(&mut self, index: usize, resources: Resources) {
        let class = self.class(resources);
        self.ready.push(index, class);
    }

    /// Takes the longest-waiting ready instance whose threads and GPU fit what is
    /// free, and reserves them: returns its index and its thread count.
    pub(super) fn start_next(&mut self) -> Option<(usize, usize)> {
        let (free_threads, gpu_free) = (self.jobs - self.threads_in_use, !self.gpu_in_use);
        let (index, (threads, gpu)) = self
            .ready
            .pop_first(|(threads, gpu)| threads <= free_threads && (gpu_free || !gpu))?;
        self.threads_in_use += threads;
        self.gpu_in_use |= gpu;
        self.running += 1;
        Some((index, threads))
    }

    /// Releases what a finished instance held.
    pub(super) fn finish(&mut self, resources: Resources) {
        let (threads, gpu) = self.class(resources);
        self.threads_in_use -= threads;
        if gpu {
            self.gpu_in_use = false;
        }
        self.running -= 1;
    }

    /// Whether no instance is running.
    pub(super) fn idle(&self) -> bool {
        self.running == 0
    }
}

/// Instances whose inputs are done, in the order they became ready, grouped by
/// the resources they ask for.
///
/// The scheduler starts the first ready instance that fits the free threads.
/// Scanning one queue for it cost O(ready) per start, O(n²) over a wide sweep
/// (and a full scan after every finished stage while the pool is busy). All
/// instances of a class fit or none does, so the first fitting instance is the
/// earliest front among the fitting classes, and there are few classes.
#[derive(Default)]
struct ReadyQueue {
    /// Each class and its instances with their arrival numbers.
    classes: Vec<(ResourceClass, VecDeque<(u64, usize)>)>,
    arrivals: u64,
}

impl ReadyQueue {
    fn push(&mut self, index: usize, class: ResourceClass) {
        let arrival = self.arrivals;
        self.arrivals += 1;
        match self.classes.iter_mut().find(|(c, _)| *c == class) {
            Some((_, queue)) => queue.push_back((arrival, index)),
            None => self
                .classes
                .push((class, VecDeque::from([(arrival, index)]))),
        }
    }

    /// Removes and returns the earliest-arrived instance whose class fits, with
    /// its class.
    fn pop_first(
        &mut self,
        fits: impl Fn(ResourceClass) -> bool,
    ) -> Option<(usize, ResourceClass)> {
        let (class, queue) = self
            .classes
            .iter_mut()
            .filter(|(class, queue)| !queue.is_empty() && fits(*class))
            .min_by_key(|(_, queue)| queue.front().map(|&(arrival, _)| arrival))?;
        let class = *class;
        queue.pop_front().map(|(_, index)| (index, class))
    }
}

#[cfg(test)]
mod tests {
    use super::{ReadyQueue, Scheduler};
    use crate::stages::Resources;

    fn index(popped: Option<(usize, (usize, bool))>) -> Option<usize> {
        popped.map(|(i, _)| i)
    }

    /// Same choices as scanning one FIFO for the first instance that fits.
    #[test]
    fn ready_queue_pops_the_earliest_instance_that_fits() {
        let mut q = ReadyQueue::default();
        q.push(0, (2, false));
        q.push(1, (1, false));
        q.push(2, (1, true));
        q.push(3, (2, false));
        q.push(4, (1, false));
        let one_cpu_thread = |(t, gpu): (usize, bool)| t <= 1 && !gpu;
        // Everything fits: arrival order.
        assert_eq!(index(q.pop_first(|_| true)), Some(0));
        // One free thread, GPU busy: skips the two-thread and GPU instances.
        assert_eq!(index(q.pop_first(one_cpu_thread)), Some(1));
        assert_eq!(index(q.pop_first(one_cpu_thread)), Some(4));
        assert_eq!(index(q.pop_first(one_cpu_thread)), None);
        assert_eq!(index(q.pop_first(|_| true)), Some(2));
        q.push(5, (1, false));
        assert_eq!(index(q.pop_first(|_| true)), Some(3));
        assert_eq!(index(q.pop_first(|_| true)), Some(5));
        assert_eq!(index(q.pop_first(|_| true)), None);
    }

    #[test]
    fn scheduler_keeps_within_the_thread_budget_and_one_gpu() {
        let cpu = |threads| Resources {
            threads,
            gpu: false,
        };
        let gpu = Resources {
            threads: 1,
            gpu: true,
        };
        let mut s = Scheduler::new(3);
        s.push_ready(0, cpu(2));
        s.push_ready(1, gpu);
        s.push_ready(2, gpu);
        s.push_ready(3, cpu(8)); // clamped to 3
        s.push_ready(4, cpu(1));
        assert_eq!(s.start_next(), Some((0, 2)));
        assert_eq!(s.start_next(), Some((1, 1)));
        // Budget spent: nothing more until something finishes.
        assert_eq!(s.start_next(), None);
        s.finish(gpu);
        // The second GPU instance fits again and waited longest.
        assert_eq!(s.start_next(), Some((2, 1)));
        s.finish(cpu(2));
        s.finish(gpu);
        assert!(s.idle());
        assert_eq!(s.start_next(), Some((3, 3)));
        assert_eq!(s.start_next(), None);
        s.finish(cpu(8));
        assert_eq!(s.start_next(), Some((4, 1)));
        s.finish(cpu(1));
        assert!(s.idle());
        assert_eq!(s.start_next(), None);
    }
}
