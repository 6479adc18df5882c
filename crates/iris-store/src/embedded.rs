//! fjall engine: to be written
