//! A progress bar with rate and ETA, optional JSONL metrics, and a line for every batch whose
//! loss was not finite (the update was skipped).

use indicatif::{ProgressBar, ProgressStyle};

use crate::metrics::{self, JsonlWriter, Metrics};
use crate::throughput::Stopwatch;
use crate::{Error, Result};

pub struct Progress {
    bar: ProgressBar,
    writer: Option<JsonlWriter>,
    write_error: Option<Error>,
    /// Steps whose update was skipped.
    pub skipped: Vec<usize>,
    /// Time and the model's forward positions since the run started (tokens/s).
    watch: Stopwatch,
    /// A replica other than the leader: it prints nothing.
    quiet: bool,
}

pub fn bar(steps: usize) -> ProgressBar {
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{bar:30} {pos}/{len} [{elapsed_precise}<{eta_precise}, {per_sec}] {msg}",
        )
        .expect("valid template"),
    );
    bar
}

impl Progress {
    pub fn new(steps: usize, metrics_path: Option<&std::path::Path>) -> Result<Self> {
        Ok(Self {
            bar: bar(steps),
            writer: metrics_path.map(JsonlWriter::create).transpose()?,
            write_error: None,
            skipped: Vec::new(),
            watch: Stopwatch::start(),
            quiet: false,
        })
    }

    /// The leader's progress, or for the other replicas of a data-parallel run a silent one
    /// (they compute the same steps).
    pub fn for_replica(
        replica: &crate::distributed::Replica,
        steps: usize,
        metrics_path: Option<&std::path::Path>,
    ) -> Result<Self> {
        if replica.is_leader() {
            return Self::new(steps, metrics_path);
        }
        let mut quiet = Self::new(steps, None)?;
        quiet.bar = ProgressBar::hidden();
        quiet.quiet = true;
        Ok(quiet)
    }

    /// Continues a resumed run: the bar starts at `step`, and metrics are appended to the file.
    pub fn resume_at(&mut self, step: usize, metrics_path: Option<&std::path::Path>) -> Result<()> {
        if step > 0 {
            self.bar.set_position(step as u64);
            self.writer = metrics_path.map(JsonlWriter::append).transpose()?;
        }
        Ok(())
    }

    /// A line above the bar, or on stdout when there is no terminal (indicatif drops it then).
    pub fn println(&self, line: &str) {
        if self.quiet {
            return;
        }
        if self.bar.is_hidden() {
            println!("{line}");
        } else {
            self.bar.println(line);
        }
    }

    pub fn on_step(&mut self, m: &Metrics) {
        self.bar.inc(1);
        let mut message = String::new();
        for (name, label) in [
            (metrics::TRAIN_LOSS, "loss"),
            (metrics::TRAIN_ACCURACY, "acc"),
            (metrics::REWARDS_ACCURACIES, "acc"),
            (metrics::REWARDS_MARGINS, "margin"),
        ] {
            if let Some(v) = m.get(name) {
                message.push_str(&format!("{label} {v:.4} "));
            }
        }
        let speed = self.watch.read();
        message.push_str(&format!("{:.0} tok/s ", speed.tokens_per_second));
        // Without a terminal indicatif draws nothing: a plain line every twentieth of the run
        // (and at its end) says how far it is, so a log file is not silent for an hour.
        if self.bar.is_hidden() && !self.quiet {
            let (done, total) = (self.bar.position(), self.bar.length().unwrap_or(0));
            let every = total.div_ceil(20).max(1);
            if done % every == 0 || done == total {
                println!("step {done}/{total} {message}({:.1}s)", speed.seconds);
            }
        }
        self.bar.set_message(message);
        if let Some(w) = self.writer.as_mut() {
            if let Err(e) = w.write(m) {
                self.write_error.get_or_insert(e);
            }
        }
        if let Some(at) = m.get(metrics::POLICY_ROLLED_BACK_AT) {
            self.println(&format!(
                "step {}: the policy moved too far from the rollout policy at minibatch {at}; the update was rolled back",
                m.step
            ));
        }
        if m.get(metrics::TRAIN_SKIPPED).is_some() {
            self.skipped.push(m.step);
            self.println(&format!(
                "step {} (batch {}): the loss was not finite; the update was skipped",
                m.step, m.step
            ));
        }
    }

    /// Ends the bar; reports skipped batches and any metrics-file error.
    pub fn finish(self) -> Result<()> {
        self.bar.finish();
        if self.quiet {
            return Ok(());
        }
        let speed = self.watch.read();
        println!(
            "trained {} steps in {:.1}s ({:.0} tokens/s: the model's forward positions)",
            self.bar.position(),
            speed.seconds,
            speed.tokens_per_second
        );
        if !self.skipped.is_empty() {
            println!(
                "{} batch(es) had a non-finite loss and were skipped: steps {:?}",
                self.skipped.len(),
                self.skipped
            );
        }
        match self.write_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}
