//! Real preference files: HH-RLHF's gzipped implicit-prompt dialogues and LLaMA-Factory's
//! ShareGPT-style DPO demo.

use crate::common::data;
use alignlab::io::prefs::read_pairs;

#[test]
fn hh_rlhf_harmless_test_split_reads_whole() {
    let report = read_pairs(&data("hh-rlhf/harmless-base-test.jsonl.gz"), true).unwrap();
    assert_eq!(report.rows.len() + report.skipped.len(), 2312);
    assert!(
        report.skipped.len() < 50,
        "{:?}",
        &report.skipped[..report.skipped.len().min(5)]
    );
    for pair in &report.rows {
        assert!(
            pair.prompt.starts_with("\n\nHuman:") && pair.prompt.ends_with("Assistant:"),
            "{:?}",
            pair.prompt
        );
        assert_ne!(pair.chosen, pair.rejected);
    }
}

#[test]
fn sharegpt_dpo_demo_reads_all_300_rows() {
    let report = read_pairs(&data("dpo-demo/dpo_en_demo.json"), false).unwrap();
    assert_eq!(report.rows.len(), 300);
    assert!(report.rows[0]
        .prompt
        .starts_with("\n\nHuman: Hi! I'd like to create a new language game"));
    assert!(report.rows[0].chosen.starts_with(" That sounds like a fun"));
}
