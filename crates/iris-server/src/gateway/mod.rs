//! Where connections come in: the framed TCP/TLS listener and the transport abstraction that
//! lets one session implementation serve TCP and WebSocket clients alike.

pub mod admission;
pub mod framed;
pub mod tcp;
pub mod transport;
