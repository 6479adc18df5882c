//! Where connections come in: the framed TCP/TLS listener, the HTTP listener's TLS, the
//! client's real address behind load balancers, and the transport abstraction that lets one
//! session implementation serve TCP and WebSocket clients alike.

pub mod admission;
pub mod client_addr;
pub mod framed;
pub mod http_listener;
pub mod listen;
pub mod proxy_protocol;
pub mod tcp;
pub mod tls;
pub mod transport;
