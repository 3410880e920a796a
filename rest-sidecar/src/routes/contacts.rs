//! `/api` contact routes: adapters over `service::Contacts`.

use axum::Json;
use axum::extract::State;
use protocol::ApiResponse;
use protocol::views::ContactView;
use serde::{Deserialize, Serialize};

use super::{Empty, ok};
use crate::extract::{Body, Caller, Path};
use crate::{ApiFailure, SidecarState};

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
    let contacts = state.services.contacts.list(caller.user_id).await?;
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
    let contact = state.services.contacts.add(caller.user_id, &body.phone, body.nickname).await?;
    Ok(ok("联系人添加成功", contact))
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
    let contact = state
        .services
        .contacts
        .update(caller.user_id, contact_id, body.nickname, body.is_blocked, body.is_muted)
        .await?;
    Ok(ok("联系人更新成功", contact))
}

/// `DELETE /api/contacts/{contact_id}`.
pub(crate) async fn remove(
    State(state): State<SidecarState>,
    caller: Caller,
    Path(contact_id): Path<i64>,
) -> Result<Json<ApiResponse<Empty>>, ApiFailure> {
    state.services.contacts.remove(caller.user_id, contact_id).await?;
    Ok(ok("联系人删除成功", Empty {}))
}
