use axum::Json;
use axum::extract::State;
use protocol::time::{now_millis, to_iso};
use protocol::views::ContactView;
use protocol::{ApiResponse, ErrorCode};
use serde::{Deserialize, Serialize};
use storage::StoreError;
use storage::model::{Contact, ContactUpdate};

use super::{Empty, ok};
use crate::extract::{Body, Caller, Path};
use crate::{ApiFailure, SidecarState, validate};

async fn view(state: &SidecarState, contact: Contact) -> Result<ContactView, ApiFailure> {
    let user = state.store.user(contact.contact_id).await?;
    Ok(ContactView {
        id: contact.id,
        user_id: contact.user_id,
        contact_id: contact.contact_id,
        nickname: contact.nickname,
        is_blocked: contact.is_blocked,
        is_muted: contact.is_muted,
        created_at: to_iso(contact.created_at),
        contact: user.as_ref().map(|user| router::views::user_public(user, false)),
    })
}

#[derive(Debug, Serialize)]
pub(crate) struct ContactList {
    contacts: Vec<ContactView>,
    total: usize,
}

/// `GET /api/contacts`.
pub(crate) async fn list(
    State(state): State<SidecarState>,
    caller: Caller,
) -> Result<Json<ApiResponse<ContactList>>, ApiFailure> {
    let mut contacts = Vec::new();
    for contact in state.store.contacts(caller.user_id).await? {
        contacts.push(view(&state, contact).await?);
    }
    Ok(ok("获取联系人列表成功", ContactList { total: contacts.len(), contacts }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct AddContact {
    phone: String,
    #[serde(default)]
    nickname: String,
}

/// `POST /api/contacts`: adds a user by phone number.
pub(crate) async fn add(
    State(state): State<SidecarState>,
    caller: Caller,
    Body(body): Body<AddContact>,
) -> Result<Json<ApiResponse<ContactView>>, ApiFailure> {
    let phone = validate::phone(&body.phone)?;
    validate::text("nickname", &body.nickname, 64)?;
    let other = state
        .store
        .user_by_phone(phone)
        .await?
        .ok_or_else(|| ApiFailure::new(ErrorCode::UserNotFound, "no user with this phone number"))?;
    let contact = match state.store.add_contact(caller.user_id, other.id, body.nickname, now_millis()).await {
        Err(StoreError::ContactExists) => return Err(ApiFailure::new(ErrorCode::Conflict, "already a contact")),
        other => other?,
    };
    Ok(ok("联系人添加成功", view(&state, contact).await?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UpdateContact {
    nickname: Option<String>,
    is_blocked: Option<bool>,
    is_muted: Option<bool>,
}

/// `PUT /api/contacts/{contact_id}`: alias, block, mute.
pub(crate) async fn update(
    State(state): State<SidecarState>,
    caller: Caller,
    Path(contact_id): Path<i64>,
    Body(body): Body<UpdateContact>,
) -> Result<Json<ApiResponse<ContactView>>, ApiFailure> {
    validate::text("nickname", body.nickname.as_deref().unwrap_or_default(), 64)?;
    let update = ContactUpdate {
        nickname: body.nickname,
        is_blocked: body.is_blocked,
        is_muted: body.is_muted,
        updated_at: now_millis(),
    };
    let contact = state
        .store
        .update_contact(caller.user_id, contact_id, update)
        .await?
        .ok_or_else(|| ApiFailure::new(ErrorCode::NotFound, format!("user {contact_id} is not a contact")))?;
    Ok(ok("联系人更新成功", view(&state, contact).await?))
}

/// `DELETE /api/contacts/{contact_id}`.
pub(crate) async fn remove(
    State(state): State<SidecarState>,
    caller: Caller,
    Path(contact_id): Path<i64>,
) -> Result<Json<ApiResponse<Empty>>, ApiFailure> {
    if !state.store.delete_contact(caller.user_id, contact_id).await? {
        return Err(ApiFailure::new(ErrorCode::NotFound, format!("user {contact_id} is not a contact")));
    }
    Ok(ok("联系人删除成功", Empty {}))
}
