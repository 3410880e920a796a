//! The REST API over real HTTP against a real server on port 0: every
//! endpoint with good input, bad input and forbidden access.

mod auth;
mod calls;
mod chats;
mod files;
mod harness;
mod messages;
mod openapi;
mod users;
