//! Issue 24: flink_answers.
