
mod train;
