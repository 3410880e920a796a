//! WebRTC call signalling: the server relays SDP and ICE between exactly
//! two devices and keeps the state machine honest.
//!
//! A call rings every online device of the callee; the device that answers
//! is the one in the call (the others get `call.end` `answered_elsewhere`),
//! and from then on signalling flows only between the caller's device and
//! that one. Ends: `user_hangup`, `rejected`, `busy`, `failed` (from a
//! party), `timeout` (unanswered), `disconnected` (a party's device left).
//! Each call leaves a `system` message in the pair's private chat.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use protocol::client::{CallAnswer, CallEnd, CallIce, CallOffer};
use protocol::server::{CallAnswered, CallEnded, CallIceRelayed, CallOffered, CallRinging};
use protocol::time::{now_millis, to_iso};
use protocol::{ErrorCode, Frame, ServerEvent};
use storage::model::UserId;
use tokio::time::Instant;

use crate::Gateway;
use crate::codec::SharedMessages;
use crate::commands::{Failure, Handled, Reply, failure};

/// Reasons a party may give in `call.end`.
const CLIENT_REASONS: [&str; 4] = ["user_hangup", "rejected", "busy", "failed"];

#[derive(Debug, Clone)]
struct Call {
    id: String,
    /// `audio` or `video`.
    kind: String,
    caller: UserId,
    caller_device: u64,
    callee: UserId,
    /// The device that answered; `None` while ringing.
    callee_device: Option<u64>,
    rang_at: Instant,
    answered_at: Option<Instant>,
}

/// Live calls on this node.
#[derive(Debug, Default)]
pub(crate) struct Calls {
    by_id: DashMap<String, Call>,
    /// Who is in (or ringing in) which call: a second call is `busy`.
    by_user: DashMap<UserId, String>,
    /// Server-assigned call ids.
    minted: AtomicU64,
}

/// Sends `event` to one device of `user`, or to all of them.
fn deliver(gateway: &Gateway, user: UserId, device: Option<u64>, event: ServerEvent) {
    let frame = Frame::new(event);
    let messages = SharedMessages::new(&frame);
    for handle in gateway.inner.registry.devices(user) {
        if device.is_none_or(|device| device == handle.id)
            && handle.outbound.try_send(messages.get(handle.encoding)).is_err()
        {
            handle.close(crate::close_codes::SLOW_CONSUMER);
        }
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
    gateway.inner.services.users.may_call(user, offer.to_user_id).await.map_err(|error| failure(&error))?;
    let id = match offer.call_id {
        Some(id) if !valid_call_id(&id) => {
            return Err((ErrorCode::BadRequest, "call_id must be 1 to 64 letters, digits, '-' or '_'".into()));
        }
        Some(id) if gateway.inner.calls.by_id.contains_key(&id) => {
            return Err((ErrorCode::Conflict, "this call_id is in use".into()));
        }
        Some(id) => id,
        // Ids need only be unique: the party check is what protects a call.
        None => format!("call_{}_{}", now_millis(), gateway.inner.calls.minted.fetch_add(1, Ordering::Relaxed)),
    };
    let calls = &gateway.inner.calls;
    if calls.by_user.contains_key(&user) {
        return Err((ErrorCode::Conflict, "you are already in a call".into()));
    }
    // Call state lives on one node: a callee whose devices are all on
    // other nodes of a cluster cannot be rung from here. Say so at once
    // rather than ring nobody until the timeout.
    if !gateway.inner.registry.is_online(offer.to_user_id)
        && gateway.inner.services.presence().online(&[offer.to_user_id]).await.is_ok_and(|online| online == [true])
    {
        metrics::counter!("switchboard_calls_refused_total", "reason" => "other_node").increment(1);
        return Err((
            ErrorCode::Unavailable,
            "the callee is connected to another gateway node; calls across nodes are not supported yet".into(),
        ));
    }
    let ringing = Reply::to(reference, ServerEvent::CallRinging(CallRinging { call_id: id.clone() }));
    if calls.by_user.contains_key(&offer.to_user_id) {
        record(gateway, user, offer.to_user_id, &offer.call_type, "busy", None).await;
        return Ok(vec![ringing, Reply::to(None, ended(&id, "busy", None))]);
    }
    let call = Call {
        id: id.clone(),
        kind: offer.call_type.clone(),
        caller: user,
        caller_device: device,
        callee: offer.to_user_id,
        callee_device: None,
        rang_at: Instant::now(),
        answered_at: None,
    };
    calls.by_user.insert(user, id.clone());
    calls.by_user.insert(offer.to_user_id, id.clone());
    calls.by_id.insert(id.clone(), call);
    metrics::counter!("switchboard_calls_total", "type" => offer.call_type.clone()).increment(1);
    let incoming = ServerEvent::CallOffer(CallOffered {
        call_id: id,
        from_user_id: user,
        to_user_id: offer.to_user_id,
        call_type: offer.call_type,
        sdp: offer.sdp,
        timestamp: to_iso(now_millis()),
    });
    deliver(gateway, offer.to_user_id, None, incoming);
    Ok(vec![ringing])
}

/// The call, if `user` is one of its two parties (strangers learn nothing).
fn party_call(gateway: &Gateway, id: &str, user: UserId) -> Result<Call, Failure> {
    let call = gateway.inner.calls.by_id.get(id).map(|call| call.clone());
    match call {
        Some(call) if call.caller == user || call.callee == user => Ok(call),
        _ => Err((ErrorCode::Forbidden, "no such call of yours".into())),
    }
}

/// `call.answer` from one of the callee's devices.
pub(crate) fn answer(gateway: &Gateway, user: UserId, device: u64, answer: &CallAnswer) -> Handled {
    if answer.sdp.trim().is_empty() {
        return Err((ErrorCode::BadRequest, "sdp must not be empty".into()));
    }
    let call = party_call(gateway, &answer.call_id, user)?;
    if call.callee != user {
        return Err((ErrorCode::Forbidden, "only the callee answers".into()));
    }
    {
        let Some(mut live) = gateway.inner.calls.by_id.get_mut(&answer.call_id) else {
            return Err((ErrorCode::Forbidden, "no such call of yours".into()));
        };
        if live.callee_device.is_some() {
            return Err((ErrorCode::Conflict, "the call was already answered".into()));
        }
        live.callee_device = Some(device);
        live.answered_at = Some(Instant::now());
    }
    let answered = ServerEvent::CallAnswer(CallAnswered {
        call_id: call.id.clone(),
        from_user_id: user,
        to_user_id: call.caller,
        sdp: answer.sdp.clone(),
        timestamp: to_iso(now_millis()),
    });
    deliver(gateway, call.caller, Some(call.caller_device), answered);
    let elsewhere = Frame::new(ended(&call.id, "answered_elsewhere", None));
    let messages = SharedMessages::new(&elsewhere);
    for handle in gateway.inner.registry.devices(user) {
        if handle.id != device && handle.outbound.try_send(messages.get(handle.encoding)).is_err() {
            handle.close(crate::close_codes::SLOW_CONSUMER);
        }
    }
    Ok(Vec::new())
}

/// `call.ice`, relayed in order to the other party's device (to every
/// ringing device before the answer).
pub(crate) fn ice(gateway: &Gateway, user: UserId, device: u64, ice: CallIce) -> Handled {
    if !(ice.candidate.is_string() || ice.candidate.is_object()) {
        return Err((ErrorCode::BadRequest, "candidate must be a string or an object".into()));
    }
    let call = party_call(gateway, &ice.call_id, user)?;
    let (to, to_device) = if user == call.caller {
        if device != call.caller_device {
            return Err((ErrorCode::Forbidden, "this device is not in the call".into()));
        }
        (call.callee, call.callee_device)
    } else {
        if call.callee_device.is_some_and(|answering| answering != device) {
            return Err((ErrorCode::Forbidden, "this device is not in the call".into()));
        }
        (call.caller, Some(call.caller_device))
    };
    let relayed = ServerEvent::CallIce(CallIceRelayed {
        call_id: call.id,
        from_user_id: user,
        to_user_id: to,
        candidate: ice.candidate,
        timestamp: to_iso(now_millis()),
    });
    deliver(gateway, to, to_device, relayed);
    Ok(Vec::new())
}

/// `call.end` from a party.
pub(crate) async fn end(gateway: &Gateway, user: UserId, device: u64, end: &CallEnd) -> Handled {
    if !CLIENT_REASONS.contains(&end.reason.as_str()) {
        return Err((ErrorCode::BadRequest, format!("reason must be one of {}", CLIENT_REASONS.join(", "))));
    }
    let call = party_call(gateway, &end.call_id, user)?;
    let in_call = if user == call.caller {
        device == call.caller_device
    } else {
        call.callee_device.is_none_or(|answering| answering == device)
    };
    if !in_call {
        return Err((ErrorCode::Forbidden, "this device is not in the call".into()));
    }
    finish(gateway, &call.id, &end.reason).await;
    Ok(Vec::new())
}

/// Ends call `id` (once), tells both parties' devices and records it.
async fn finish(gateway: &Gateway, id: &str, reason: &str) {
    let Some((_, call)) = gateway.inner.calls.by_id.remove(id) else { return };
    let calls = &gateway.inner.calls;
    calls.by_user.remove_if(&call.caller, |_, current| current == id);
    calls.by_user.remove_if(&call.callee, |_, current| current == id);
    let duration = call.answered_at.map(|at| at.elapsed().as_secs());
    let status = match (duration, reason) {
        (Some(_), _) => "answered",
        (None, "rejected" | "busy" | "failed") => reason,
        (None, _) => "missed",
    };
    // The record is stored before anyone hears the call ended.
    record(gateway, call.caller, call.callee, &call.kind, status, duration).await;
    let ended = ended(&call.id, reason, duration);
    deliver(gateway, call.caller, Some(call.caller_device), ended.clone());
    // While ringing, every callee device rings and must stop.
    deliver(gateway, call.callee, call.callee_device, ended);
    metrics::counter!("switchboard_calls_ended_total", "reason" => reason.to_owned()).increment(1);
}

/// Leaves the call's `system` message in the pair's private chat.
async fn record(gateway: &Gateway, from: UserId, to: UserId, call_type: &str, status: &str, duration: Option<u64>) {
    let chat = match gateway.inner.services.store().private_chat_between(from, to).await {
        Ok(Some(chat)) => chat.id,
        Ok(None) => return,
        Err(error) => {
            tracing::warn!(%error, "call record skipped");
            return;
        }
    };
    let content = serde_json::json!({"event": "call", "call_type": call_type, "status": status, "duration": duration})
        .to_string();
    if let Err(error) = gateway.inner.services.pipeline().post_system(chat, from, content).await {
        tracing::warn!(%error, "call record not stored");
    }
}

/// A device left: calls it was in end `disconnected`; so does a ringing
/// call whose callee has no device left.
pub(crate) async fn device_left(gateway: &Gateway, user: UserId, device: u64, last_device: bool) {
    let Some(id) = gateway.inner.calls.by_user.get(&user).map(|id| id.clone()) else { return };
    let Some(call) = gateway.inner.calls.by_id.get(&id).map(|call| call.clone()) else { return };
    let in_it = (call.caller == user && call.caller_device == device)
        || (call.callee == user
            && (call.callee_device == Some(device) || (call.callee_device.is_none() && last_device)));
    if in_it {
        finish(gateway, &id, "disconnected").await;
    }
}

/// Ends calls that rang for longer than the ring timeout.
pub(crate) async fn expire_ringing(gateway: &Gateway, timeout: Duration) {
    let due: Vec<String> = gateway
        .inner
        .calls
        .by_id
        .iter()
        .filter(|call| call.callee_device.is_none() && call.rang_at.elapsed() >= timeout)
        .map(|call| call.id.clone())
        .collect();
    for id in due {
        finish(gateway, &id, "timeout").await;
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
        let calls = &f.gateway.inner.calls;
        assert!(calls.by_user.contains_key(&f.alice) && calls.by_user.contains_key(&f.bob), "both are busy");

        tokio::time::advance(Duration::from_secs(44)).await;
        expire_ringing(&f.gateway, timeout).await;
        assert!(calls.by_id.contains_key("c1"), "still ringing at 44 s");

        tokio::time::advance(Duration::from_secs(1)).await;
        expire_ringing(&f.gateway, timeout).await;
        assert!(!calls.by_id.contains_key("c1"), "ended at 45 s");
        assert!(calls.by_user.is_empty(), "both are free again");
    }
}
