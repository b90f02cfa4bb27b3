pub mod http_backend;
