//! stub
pub enum ResponseFraming {}
pub fn write_head() {}
pub fn reason_phrase() {}
pub struct ChunkHead;
