//! WebRTC call signalling: the server relays SDP and ICE between exactly
//! two devices and keeps the state machine honest, whichever nodes the
//! parties are connected to.
//!
//! A call rings every online device of the callee, on every node; the
//! device that answers is the one in the call (the others get `call.end`
//! `answered_elsewhere`), and from then on signalling flows only between
//! the caller's device and that one. Ends: `user_hangup`, `rejected`,
//! `busy`, `failed` (from a party), `timeout` (unanswered), `disconnected`
//! (a party's device left, or its node died). Each call leaves a `system`
//! message in the pair's private chat.
//!
//! The call's state lives in the [`CallRegistry`] (this process, or Redis
//! in a cluster); every event goes through the router, aimed at one device
//! when it is for one. The node that started a call keeps its ring timer.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use protocol::client::{CallAnswer, CallEnd, CallIce, CallOffer};
use protocol::server::{CallAnswered, CallEnded, CallIceRelayed, CallOffered, CallRinging};
use protocol::time::{now_millis, to_iso};
use protocol::{ErrorCode, ServerEvent};
use router::calls::{Answered, Begin, CallRecord, DeviceRef};
use router::{Delivery, Devices};
use storage::model::UserId;
use tokio::time::Instant;

use crate::Gateway;
use crate::commands::{Failure, Handled, Reply, failure};

/// Reasons a party may give in `call.end`.
const CLIENT_REASONS: [&str; 4] = ["user_hangup", "rejected", "busy", "failed"];

/// This node's part of call signalling: the ring timers of the calls it
/// started, the calls a device of this node is in (whose other party's
/// node it watches), and the counter of the ids it mints.
#[derive(Debug, Default)]
pub(crate) struct Calls {
    /// Call id -> when it started ringing (tokio's clock, so tests pause it).
    ringing: DashMap<String, Instant>,
    /// Calls a party device of this node is in -> that party.
    hosted: DashMap<String, UserId>,
    minted: AtomicU64,
}

fn unavailable(error: &router::calls::CallError) -> Failure {
    tracing::warn!(%error, "call registry unavailable");
    (ErrorCode::Unavailable, "calls are unavailable right now; try again".into())
}

/// Publishes `event` to `user`'s `devices`, on whichever nodes they are.
async fn send(gateway: &Gateway, user: UserId, devices: Devices, event: ServerEvent) {
    let delivery = Delivery { devices, ..Delivery::new(vec![user], event) };
    if let Err(error) = gateway.inner.services.router().publish(delivery).await {
        tracing::warn!(%error, user_id = user, "call signalling not published");
    }
}

fn ended(call_id: &str, reason: &str, duration: Option<u64>) -> ServerEvent {
    ServerEvent::CallEnd(CallEnded {
        call_id: call_id.to_owned(),
        reason: reason.to_owned(),
        duration,
        timestamp: to_iso(now_millis()),
    })
}

fn valid_call_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// `call.offer` from the caller's device.
pub(crate) async fn offer(
    gateway: &Gateway,
    user: UserId,
    device: u64,
    reference: Option<&str>,
    offer: CallOffer,
) -> Handled {
    if !matches!(offer.call_type.as_str(), "audio" | "video") {
        return Err((ErrorCode::BadRequest, "call_type must be audio or video".into()));
    }
    if offer.sdp.trim().is_empty() {
        return Err((ErrorCode::BadRequest, "sdp must not be empty".into()));
    }
    if offer.call_id.as_deref().is_some_and(|id| !valid_call_id(id)) {
        return Err((ErrorCode::BadRequest, "call_id must be 1 to 64 letters, digits, '-' or '_'".into()));
    }
    gateway.inner.services.users.may_call(user, offer.to_user_id).await.map_err(|error| failure(&error))?;
    let node = gateway.inner.config.node_id;
    // Ids need only be unique: the party check is what protects a call.
    let id = offer.call_id.unwrap_or_else(|| {
        format!("call_{node}_{}_{}", now_millis(), gateway.inner.calls.minted.fetch_add(1, Ordering::Relaxed))
    });
    let call = CallRecord {
        id: id.clone(),
        kind: offer.call_type.clone(),
        caller: user,
        caller_device: DeviceRef { node, connection: device },
        callee: offer.to_user_id,
        callee_device: None,
        answered_at: None,
    };
    let ringing = Reply::to(reference, ServerEvent::CallRinging(CallRinging { call_id: id.clone() }));
    match gateway.inner.registry_of_calls().begin(&call).await.map_err(|error| unavailable(&error))? {
        Begin::IdTaken => return Err((ErrorCode::Conflict, "this call_id is in use".into())),
        Begin::CallerBusy => return Err((ErrorCode::Conflict, "you are already in a call".into())),
        Begin::CalleeBusy => {
            record(gateway, user, offer.to_user_id, &offer.call_type, "busy", None).await;
            return Ok(vec![ringing, Reply::to(None, ended(&id, "busy", None))]);
        }
        Begin::Started => {}
    }
    gateway.inner.calls.ringing.insert(id.clone(), Instant::now());
    gateway.inner.calls.hosted.insert(id.clone(), user);
    metrics::counter!("switchboard_calls_total", "type" => offer.call_type.clone()).increment(1);
    let incoming = ServerEvent::CallOffer(CallOffered {
        call_id: id,
        from_user_id: user,
        to_user_id: offer.to_user_id,
        call_type: offer.call_type,
        sdp: offer.sdp,
        timestamp: to_iso(now_millis()),
    });
    send(gateway, offer.to_user_id, Devices::All, incoming).await;
    Ok(vec![ringing])
}

/// The call, if `user` is one of its two parties (strangers learn nothing).
async fn party_call(gateway: &Gateway, id: &str, user: UserId) -> Result<CallRecord, Failure> {
    let call = gateway.inner.registry_of_calls().get(id).await.map_err(|error| unavailable(&error))?;
    match call {
        Some(call) if call.caller == user || call.callee == user => Ok(call),
        _ => Err((ErrorCode::Forbidden, "no such call of yours".into())),
    }
}

/// `call.answer` from one of the callee's devices.
pub(crate) async fn answer(gateway: &Gateway, user: UserId, device: u64, answer: &CallAnswer) -> Handled {
    if answer.sdp.trim().is_empty() {
        return Err((ErrorCode::BadRequest, "sdp must not be empty".into()));
    }
    let call = party_call(gateway, &answer.call_id, user).await?;
    if call.callee != user {
        return Err((ErrorCode::Forbidden, "only the callee answers".into()));
    }
    let me = DeviceRef { node: gateway.inner.config.node_id, connection: device };
    let registry = gateway.inner.registry_of_calls();
    let call = match registry.answer(&call.id, me, now_millis()).await.map_err(|error| unavailable(&error))? {
        Answered::Now(call) => call,
        Answered::Already => return Err((ErrorCode::Conflict, "the call was already answered".into())),
        Answered::Gone => return Err((ErrorCode::Forbidden, "no such call of yours".into())),
    };
    let answered = ServerEvent::CallAnswer(CallAnswered {
        call_id: call.id.clone(),
        from_user_id: user,
        to_user_id: call.caller,
        sdp: answer.sdp.clone(),
        timestamp: to_iso(now_millis()),
    });
    gateway.inner.calls.hosted.insert(call.id.clone(), user);
    send(gateway, call.caller, Devices::Only(call.caller_device), answered).await;
    send(gateway, user, Devices::AllBut(me), ended(&call.id, "answered_elsewhere", None)).await;
    Ok(Vec::new())
}

/// `call.ice`, relayed in order to the other party's device (to every
/// ringing device before the answer).
pub(crate) async fn ice(gateway: &Gateway, user: UserId, device: u64, ice: CallIce) -> Handled {
    if !(ice.candidate.is_string() || ice.candidate.is_object()) {
        return Err((ErrorCode::BadRequest, "candidate must be a string or an object".into()));
    }
    let call = party_call(gateway, &ice.call_id, user).await?;
    let me = DeviceRef { node: gateway.inner.config.node_id, connection: device };
    let (to, to_devices) = if user == call.caller {
        if me != call.caller_device {
            return Err((ErrorCode::Forbidden, "this device is not in the call".into()));
        }
        (call.callee, call.callee_device.map_or(Devices::All, Devices::Only))
    } else {
        if call.callee_device.is_some_and(|answering| answering != me) {
            return Err((ErrorCode::Forbidden, "this device is not in the call".into()));
        }
        (call.caller, Devices::Only(call.caller_device))
    };
    let relayed = ServerEvent::CallIce(CallIceRelayed {
        call_id: call.id,
        from_user_id: user,
        to_user_id: to,
        candidate: ice.candidate,
        timestamp: to_iso(now_millis()),
    });
    send(gateway, to, to_devices, relayed).await;
    Ok(Vec::new())
}

/// `call.end` from a party.
pub(crate) async fn end(gateway: &Gateway, user: UserId, device: u64, end: &CallEnd) -> Handled {
    if !CLIENT_REASONS.contains(&end.reason.as_str()) {
        return Err((ErrorCode::BadRequest, format!("reason must be one of {}", CLIENT_REASONS.join(", "))));
    }
    let call = party_call(gateway, &end.call_id, user).await?;
    let me = DeviceRef { node: gateway.inner.config.node_id, connection: device };
    let in_call = if user == call.caller {
        me == call.caller_device
    } else {
        call.callee_device.is_none_or(|answering| answering == me)
    };
    if !in_call {
        return Err((ErrorCode::Forbidden, "this device is not in the call".into()));
    }
    finish(gateway, &call.id, &end.reason).await;
    Ok(Vec::new())
}

/// Ends call `id` (once, whichever node asks first), tells both parties'
/// devices and records it.
async fn finish(gateway: &Gateway, id: &str, reason: &str) {
    gateway.inner.calls.ringing.remove(id);
    gateway.inner.calls.hosted.remove(id);
    let call = match gateway.inner.registry_of_calls().finish(id).await {
        Ok(Some(call)) => call,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(%error, call_id = id, "call not ended: registry unavailable");
            return;
        }
    };
    let duration = call.answered_at.map(|at| u64::try_from((now_millis() - at) / 1000).unwrap_or(0));
    let status = match (duration, reason) {
        (Some(_), _) => "answered",
        (None, "rejected" | "busy" | "failed") => reason,
        (None, _) => "missed",
    };
    // The record is stored before anyone hears the call ended.
    record(gateway, call.caller, call.callee, &call.kind, status, duration).await;
    if status == "missed" {
        let hooks = gateway.inner.services.hooks();
        if hooks.enabled() {
            let data = serde_json::json!({
                "call_id": call.id,
                "caller_id": call.caller,
                "callee_id": call.callee,
                "call_type": call.kind,
                "reason": reason,
            });
            hooks.emit(service::hooks::types::CALL_MISSED, data);
        }
    }
    let ended = ended(&call.id, reason, duration);
    send(gateway, call.caller, Devices::Only(call.caller_device), ended.clone()).await;
    // While ringing, every callee device rings and must stop.
    send(gateway, call.callee, call.callee_device.map_or(Devices::All, Devices::Only), ended).await;
    metrics::counter!("switchboard_calls_ended_total", "reason" => reason.to_owned()).increment(1);
}

/// Leaves the call's `system` message in the pair's private chat, sent by
/// the server (sender 0): no party may edit or delete it.
async fn record(gateway: &Gateway, from: UserId, to: UserId, call_type: &str, status: &str, duration: Option<u64>) {
    let services = &gateway.inner.services;
    let chat = match services.store().private_chat_between(from, to).await {
        Ok(Some(chat)) => chat.id,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(%error, caller = from, callee = to, "call record skipped");
            return;
        }
    };
    let content = serde_json::json!({
        "event": "call",
        "call_type": call_type,
        "status": status,
        "duration": duration,
        "caller_id": from,
        "callee_id": to,
    })
    .to_string();
    if let Err(error) = services.pipeline().post_system(chat, 0, content).await {
        tracing::warn!(%error, caller = from, callee = to, "call record not stored");
    }
}

/// A device of `user` on this node left: the call it was in ends
/// `disconnected`; so does a ringing call whose callee has no device left
/// anywhere (`gone_everywhere`).
pub(crate) async fn device_left(gateway: &Gateway, user: UserId, device: u64, gone_everywhere: bool) {
    let registry = gateway.inner.registry_of_calls();
    // A device of this node is in a call only when this node placed or
    // answered it; a ringing callee matters only once their last device
    // anywhere is gone. So most disconnects ask the registry nothing.
    let hosted =
        gateway.inner.calls.hosted.iter().find(|entry| *entry.value() == user).map(|entry| entry.key().clone());
    let id = match hosted {
        Some(id) => id,
        None if gone_everywhere => {
            let Ok(Some(id)) = registry.call_of(user).await else { return };
            id
        }
        None => return,
    };
    let Ok(Some(call)) = registry.get(&id).await else { return };
    let me = DeviceRef { node: gateway.inner.config.node_id, connection: device };
    let in_it = (call.caller == user && call.caller_device == me)
        || (call.callee == user
            && (call.callee_device == Some(me) || (call.callee_device.is_none() && gone_everywhere)));
    if in_it {
        finish(gateway, &id, "disconnected").await;
    }
}

/// `user` has no device anywhere any more (their node died): their call ends
/// `disconnected`.
pub(crate) async fn user_gone(gateway: &Gateway, user: UserId) {
    if let Ok(Some(id)) = gateway.inner.registry_of_calls().call_of(user).await {
        finish(gateway, &id, "disconnected").await;
    }
}

/// Ends the calls this node started that rang for longer than the ring
/// timeout; forgets the timers of calls answered or ended meanwhile.
pub(crate) async fn expire_ringing(gateway: &Gateway, timeout: Duration) {
    let due: Vec<String> = gateway
        .inner
        .calls
        .ringing
        .iter()
        .filter(|entry| entry.value().elapsed() >= timeout)
        .map(|entry| entry.key().clone())
        .collect();
    for id in due {
        gateway.inner.calls.ringing.remove(&id);
        match gateway.inner.registry_of_calls().get(&id).await {
            Ok(Some(call)) if call.callee_device.is_none() => finish(gateway, &id, "timeout").await,
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, call_id = id, "ring timeout not checked"),
        }
    }
}

/// The calls' own sweeper, until `shutdown`: ring timeouts of the calls
/// this node started, and the other parties' nodes of the calls its
/// devices are in.
pub(crate) async fn sweep(gateway: Gateway, shutdown: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(gateway.inner.config.sweep_interval);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = tick.tick() => {
                expire_ringing(&gateway, gateway.inner.config.ring_timeout).await;
                watch_parties(&gateway).await;
            }
        }
    }
}

/// Ends the calls of this node's devices whose other party was on a node
/// that died (its presence lease ran out): that device is gone with it.
/// Calls ended elsewhere are forgotten.
pub(crate) async fn watch_parties(gateway: &Gateway) {
    let node = gateway.inner.config.node_id;
    let hosted: Vec<String> = gateway.inner.calls.hosted.iter().map(|entry| entry.key().clone()).collect();
    for id in hosted {
        let call = match gateway.inner.registry_of_calls().get(&id).await {
            Ok(Some(call)) => call,
            Ok(None) => {
                gateway.inner.calls.hosted.remove(&id);
                continue;
            }
            Err(error) => {
                tracing::debug!(%error, "call parties not checked");
                return;
            }
        };
        let other = if call.caller_device.node == node { call.callee_device } else { Some(call.caller_device) };
        let Some(other) = other.filter(|device| device.node != node) else { continue };
        if let Ok(false) = gateway.inner.services.presence().node_alive(other.node).await {
            tracing::info!(call_id = id, node = other.node, "a call party's node died");
            finish(gateway, &id, "disconnected").await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use protocol::ServerEvent;
    use protocol::client::CallOffer;

    use super::{expire_ringing, offer};
    use crate::GatewayConfig;
    use crate::fixture::fixture;

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_call_ends_after_45_seconds() {
        let f = fixture(GatewayConfig::default()).await;
        let timeout = f.gateway.inner.config.ring_timeout;
        assert_eq!(timeout, Duration::from_secs(45));
        let ring =
            CallOffer { to_user_id: f.bob, call_type: "audio".into(), sdp: "v=0".into(), call_id: Some("c1".into()) };
        let replies = offer(&f.gateway, f.alice, 7, Some("r1"), ring).await.unwrap();
        assert!(matches!(replies[0].event, ServerEvent::CallRinging(_)));
        assert_eq!(replies[0].reference.as_deref(), Some("r1"));
        let registry = f.gateway.inner.registry_of_calls();
        assert_eq!(registry.call_of(f.alice).await.unwrap().as_deref(), Some("c1"), "the caller is busy");
        assert_eq!(registry.call_of(f.bob).await.unwrap().as_deref(), Some("c1"), "so is the callee");

        tokio::time::advance(Duration::from_secs(44)).await;
        expire_ringing(&f.gateway, timeout).await;
        assert!(registry.get("c1").await.unwrap().is_some(), "still ringing at 44 s");

        tokio::time::advance(Duration::from_secs(1)).await;
        expire_ringing(&f.gateway, timeout).await;
        assert!(registry.get("c1").await.unwrap().is_none(), "ended at 45 s");
        assert!(registry.call_of(f.alice).await.unwrap().is_none() && registry.call_of(f.bob).await.unwrap().is_none());
    }
}
