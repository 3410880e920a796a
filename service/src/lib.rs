//! Every use case of Switchboard, written once: sending, editing,
//! deleting and pinning messages, read and delivery receipts, history and
//! sync, chats and members, contacts and blocks, profiles and presence,
//! and the rules of typing and calls.
//!
//! Transports are adapters over this crate: the REST sidecar, the
//! WebSocket gateway and each seed dialect decode a request into a call
//! here and encode what it answers (or its [`ServiceError`]) in their own
//! shapes. Nothing here knows an HTTP status or a close code, and nothing
//! above here knows a business rule.
//!
//! [`Services`] is the composition: one cheap handle per domain over the
//! same store, router and presence registry.

pub mod admin;
pub mod auth;
mod chats;
mod contacts;
mod error;
pub mod events;
pub mod hooks;
mod messages;
pub mod notifications;
pub mod pairs;
mod pipeline;
pub mod reactions;
mod scheduler;
mod users;
pub mod validate;
pub mod views;

use std::sync::Arc;

use router::{PresenceRegistry, Router};
use storage::Store;

pub use admin::Admin;
pub use auth::TokenService;
pub use chats::{ChatList, Chats, CreateChat};
pub use contacts::Contacts;
pub use error::{ServiceError, ServiceResult};
pub use hooks::{HookEvent, Hooks};
pub use messages::{HistoryQuery, MemberReceipt, MessagePage, MessageReceipts, Messages, ReadMarker};
pub use notifications::Notifications;
pub use pairs::Pairs;
pub use pipeline::{QueuedSends, SendLimits, SendPipeline, Sent, audience, file_path, internal_file, new_message};
pub use reactions::Reactions;
pub use scheduler::{Retries, run_scheduler};
pub use users::{PresenceState, ProfileUpdate, Users};

/// Limits of the domain, each with a default a messenger can live by.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub send: SendLimits,
    /// Most members a group may have.
    pub max_group_members: usize,
    /// How long after sending its sender may recall a message (seed 000: 2 minutes).
    pub recall_window_ms: i64,
    /// How long a notification is kept (90 days).
    pub notification_retention_ms: i64,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            send: SendLimits::default(),
            max_group_members: 1_000,
            recall_window_ms: 2 * 60 * 1000,
            notification_retention_ms: 90 * 86_400 * 1000,
        }
    }
}

/// What every domain handle shares. Cheap to clone.
#[derive(Clone)]
pub(crate) struct Deps {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) router: Arc<dyn Router>,
    pub(crate) presence: Arc<dyn PresenceRegistry>,
    pub(crate) pipeline: SendPipeline,
    pub(crate) config: Arc<ServiceConfig>,
    /// Where webhook events go (nowhere, unless webhooks are configured).
    pub(crate) hooks: Hooks,
}

impl std::fmt::Debug for Deps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Deps").field("config", &self.config).finish_non_exhaustive()
    }
}

/// The service layer of one process: a handle per domain. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Services {
    pub messages: Messages,
    pub chats: Chats,
    pub contacts: Contacts,
    pub users: Users,
    pub notifications: Notifications,
    pub reactions: Reactions,
    /// Pairs of users (seed 004's couples) and their board.
    pub pairs: Pairs,
    /// What app backends do through the server API.
    pub admin: Admin,
    deps: Deps,
}

impl Services {
    /// The services over `store`, publishing through `router`, asking
    /// `presence` who is online. Seqs and duplicates are the store's.
    pub fn new(
        store: Arc<dyn Store>,
        router: Arc<dyn Router>,
        presence: Arc<dyn PresenceRegistry>,
        config: ServiceConfig,
    ) -> Self {
        let pipeline = SendPipeline::new(store.clone(), router.clone(), config.send.clone());
        Self::assemble(Deps { store, router, presence, pipeline, config: Arc::new(config), hooks: Hooks::default() })
    }

    /// The same services, handing webhook events to `hooks`.
    #[must_use]
    pub fn with_hooks(self, hooks: Hooks) -> Self {
        let mut deps = self.deps;
        deps.pipeline = deps.pipeline.with_hooks(hooks.clone(), deps.presence.clone());
        deps.hooks = hooks;
        Self::assemble(deps)
    }

    fn assemble(deps: Deps) -> Self {
        Self {
            messages: Messages::new(deps.clone()),
            chats: Chats::new(deps.clone()),
            contacts: Contacts::new(deps.clone()),
            users: Users::new(deps.clone()),
            notifications: Notifications::new(deps.clone()),
            reactions: Reactions::new(deps.clone()),
            pairs: Pairs::new(deps.clone()),
            admin: Admin::new(deps.clone()),
            deps,
        }
    }

    /// The send pipeline (the scheduler and call records use it directly).
    pub fn pipeline(&self) -> &SendPipeline {
        &self.deps.pipeline
    }

    /// The store behind every use case (for what is not a use case yet:
    /// auth flows and files).
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.deps.store
    }

    /// The router events are published through.
    pub fn router(&self) -> &Arc<dyn Router> {
        &self.deps.router
    }

    /// The presence registry.
    pub fn presence(&self) -> &Arc<dyn PresenceRegistry> {
        &self.deps.presence
    }

    pub fn config(&self) -> &ServiceConfig {
        &self.deps.config
    }

    /// Where webhook events go.
    pub fn hooks(&self) -> &Hooks {
        &self.deps.hooks
    }
}
