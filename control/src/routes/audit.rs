//! `GET /audit` (admin): newest first, filters `actor`, `action` (prefix), `resource`.

use axum::response::Response;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;

use antcode_core::model::{Page, Role};

use super::{ok, PageQuery, Q};
use crate::auth::Ctx;
use crate::problem::ApiResult;
use crate::AppState;

pub fn router() -> Router<AppState> {
    Router::new().route("/audit", get(list))
}

#[derive(Deserialize)]
struct AuditQuery {
    actor: Option<String>,
    action: Option<String>,
    resource: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// The store pages without filters, so filtering scans at most this many pages per request and
/// hands back a cursor to continue from.
const MAX_SCAN_PAGES: usize = 20;

async fn list(ctx: Ctx, Q(q): Q<AuditQuery>) -> ApiResult<Response> {
    ctx.require(Role::Admin, "audit.read", "").await?;
    let page = PageQuery {
        limit: q.limit,
        cursor: q.cursor.clone(),
    };
    let limit = page.limit()?;
    let mut cursor = page.cursor()?.map(str::to_string);
    // What this caller (and anyone before it) did is in the trail it reads.
    ctx.state.audit.flush().await;
    let filtered = q.actor.is_some() || q.action.is_some() || q.resource.is_some();
    if !filtered {
        return Ok(ok(ctx
            .state
            .store
            .list_audit(limit, cursor.as_deref())
            .await?));
    }
    let mut items = vec![];
    for _ in 0..MAX_SCAN_PAGES {
        let got = ctx.state.store.list_audit(500, cursor.as_deref()).await?;
        for e in got.items {
            cursor = Some(e.id.clone());
            let keep = q.actor.as_ref().is_none_or(|a| &e.actor == a)
                && q.action
                    .as_ref()
                    .is_none_or(|a| e.action.starts_with(a.as_str()))
                && q.resource.as_ref().is_none_or(|r| &e.resource == r);
            if keep {
                items.push(e);
                if items.len() == limit as usize {
                    return Ok(ok(Page {
                        items,
                        next_cursor: cursor,
                    }));
                }
            }
        }
        if got.next_cursor.is_none() {
            return Ok(ok(Page {
                items,
                next_cursor: None,
            }));
        }
    }
    Ok(ok(Page {
        items,
        next_cursor: cursor,
    }))
}
