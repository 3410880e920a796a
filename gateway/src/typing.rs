//! Typing indicators: throttled per user and chat, and expiring by
//! themselves 6 s after the last refresh (the others then see
//! `is_typing: false`).

use std::time::Duration;

use dashmap::DashMap;
use router::Delivery;
use storage::model::{ChatId, UserId};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::Gateway;
use crate::commands::Handled;

/// How often expired states are looked for.
const SWEEP: Duration = Duration::from_millis(250);

/// Times on tokio's clock, so expiry is testable with paused time.
#[derive(Debug, Clone, Copy)]
struct State {
    refreshed: Instant,
    announced: Instant,
}

/// Who is typing where, on this node.
#[derive(Debug, Default)]
pub(crate) struct Typing {
    states: DashMap<(ChatId, UserId), State>,
}

async fn announce(gateway: &Gateway, chat_id: ChatId, user_id: UserId, is_typing: bool) {
    let services = &gateway.inner.services;
    let recipients = match services.chats.typing_audience(chat_id, user_id).await {
        Ok(recipients) => recipients,
        Err(error) => {
            // Left the chat meanwhile, or the store failed: nobody to tell.
            tracing::debug!(%error, "typing audience unavailable");
            return;
        }
    };
    let event = service::events::typing(chat_id, user_id, is_typing);
    if let Err(error) = services.router().publish(Delivery::new(recipients, event)).await {
        tracing::warn!(%error, chat_id, user_id, "typing not published");
    }
}

/// The `typing` command.
pub(crate) async fn command(gateway: &Gateway, user_id: UserId, request: &protocol::client::Typing) -> Handled {
    let key = (request.chat_id, user_id);
    let now = Instant::now();
    let typing = &gateway.inner.typing;
    if !request.is_typing {
        if typing.states.remove(&key).is_some() {
            announce(gateway, request.chat_id, user_id, false).await;
        }
        return Ok(Vec::new());
    }
    // A refresh inside the throttle window only extends the state.
    if let Some(mut state) = typing.states.get_mut(&key)
        && now.duration_since(state.announced) < gateway.inner.config.typing_throttle
    {
        state.refreshed = now;
        return Ok(Vec::new());
    }
    gateway
        .inner
        .services
        .chats
        .membership(request.chat_id, user_id)
        .await
        .map_err(|e| crate::commands::failure(&e))?;
    typing.states.insert(key, State { refreshed: now, announced: now });
    announce(gateway, request.chat_id, user_id, true).await;
    Ok(Vec::new())
}

/// Ends typing states nobody refreshed, until `shutdown`.
pub(crate) async fn expire(gateway: Gateway, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => expire_due(&gateway).await,
        }
    }
}

/// Ends (and announces the end of) every typing state older than the expiry.
pub(crate) async fn expire_due(gateway: &Gateway) {
    let expiry = gateway.inner.config.typing_expiry;
    let expired: Vec<(ChatId, UserId)> = gateway
        .inner
        .typing
        .states
        .iter()
        .filter(|entry| entry.value().refreshed.elapsed() >= expiry)
        .map(|entry| *entry.key())
        .collect();
    for key in expired {
        if gateway.inner.typing.states.remove_if(&key, |_, state| state.refreshed.elapsed() >= expiry).is_some() {
            announce(gateway, key.0, key.1, false).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use protocol::client::Typing;

    use super::{command, expire_due};
    use crate::GatewayConfig;
    use crate::fixture::fixture;

    fn typing_of(delivery: &router::Delivery) -> Option<bool> {
        delivery.frame.to_event().and_then(|event| event.data["is_typing"].as_bool())
    }

    #[tokio::test(start_paused = true)]
    async fn typing_ends_six_seconds_after_the_last_refresh() {
        let mut f = fixture(GatewayConfig::default()).await;
        let typing = |on: bool| Typing { chat_id: f.chat, is_typing: on };
        command(&f.gateway, f.alice, &typing(true)).await.unwrap();
        let started = f.events.try_recv().unwrap();
        assert_eq!((started.recipients.clone(), typing_of(&started)), (vec![f.bob], Some(true)));

        // A refresh inside the 3 s throttle is not announced, but extends the state.
        tokio::time::advance(Duration::from_secs(2)).await;
        command(&f.gateway, f.alice, &typing(true)).await.unwrap();
        assert!(f.events.try_recv().is_err(), "throttled");

        // 5.9 s after the refresh: still typing.
        tokio::time::advance(Duration::from_millis(5_900)).await;
        expire_due(&f.gateway).await;
        assert!(f.events.try_recv().is_err(), "not yet expired");

        tokio::time::advance(Duration::from_millis(100)).await;
        expire_due(&f.gateway).await;
        let ended = f.events.try_recv().unwrap();
        assert_eq!((ended.recipients.clone(), typing_of(&ended)), (vec![f.bob], Some(false)));
        expire_due(&f.gateway).await;
        assert!(f.events.try_recv().is_err(), "ended once");
    }

    #[tokio::test(start_paused = true)]
    async fn a_refresh_after_the_throttle_is_announced_again() {
        let mut f = fixture(GatewayConfig::default()).await;
        let typing = Typing { chat_id: f.chat, is_typing: true };
        command(&f.gateway, f.alice, &typing).await.unwrap();
        f.events.try_recv().unwrap();
        tokio::time::advance(Duration::from_secs(3)).await;
        command(&f.gateway, f.alice, &typing).await.unwrap();
        assert_eq!(typing_of(&f.events.try_recv().unwrap()), Some(true));
        let stranger = command(&f.gateway, 999, &typing).await;
        assert!(stranger.is_err(), "non-members cannot type in a chat");
    }
}
