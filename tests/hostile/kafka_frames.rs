//! Issue 24: kafka_frames.
