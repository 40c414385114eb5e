//! Which route needs which token, in one place, and the middleware that
//! enforces it on every request of the internal API.
//!
//! Routes are added through [`Routes`], whose every method takes the
//! [`Access`] the route needs: a route cannot be added without choosing
//! who may call it. The table it builds is what [`authorize`] reads. A
//! request for no route (404) or a method a route does not take (405)
//! needs a valid token of any role, so that the API's shape is not
//! shown to whoever can reach the port.
//!
//! Missing, malformed, unknown and revoked tokens get 401 with
//! `WWW-Authenticate: Bearer` (RFC 6750); a valid token of a role the
//! route does not admit gets 403. Either way the handler never runs, so
//! nothing is stored. Routes open to services check the service in their
//! handler, through [`Caller`].

use std::collections::HashMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Request, State};
use axum::handler::Handler;
use axum::http::request::Parts;
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodFilter, on};

use super::{ApiError, AppState, MAX_BODY, blocking, hashing};
use crate::auth::{Access, Presented, Principal, Tokens};
use crate::provisioning::{Provisioning, ProvisioningError, User};

/// The router being built, and the access each (method, route) needs.
pub struct Routes {
    router: Router<AppState>,
    table: HashMap<&'static str, Vec<(Method, Access)>>,
}

impl Default for Routes {
    fn default() -> Routes {
        Routes {
            router: Router::new(),
            table: HashMap::new(),
        }
    }
}

impl Routes {
    pub fn get<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Routes {
        self.add(Method::GET, path, access, handler, None)
    }

    pub fn post<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Routes {
        self.add(Method::POST, path, access, handler, None)
    }

    pub fn put<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        access: Access,
        handler: H,
    ) -> Routes {
        self.add(Method::PUT, path, access, handler, None)
    }

    /// A POST whose body may be up to `limit` bytes (a plugin).
    pub fn post_large<H: Handler<T, AppState>, T: 'static>(
        self,
        path: &'static str,
        access: Access,
        limit: usize,
        handler: H,
    ) -> Routes {
        self.add(Method::POST, path, access, handler, Some(limit))
    }

    fn add<H: Handler<T, AppState>, T: 'static>(
        mut self,
        method: Method,
        path: &'static str,
        access: Access,
        handler: H,
        limit: Option<usize>,
    ) -> Routes {
        let filter = if method == Method::GET {
            MethodFilter::GET
        } else if method == Method::PUT {
            MethodFilter::PUT
        } else {
            MethodFilter::POST
        };
        let mut route = on(filter, handler);
        if let Some(limit) = limit {
            route = route.layer(DefaultBodyLimit::max(limit));
        }
        // axum merges the methods of one path (and panics on a repeat).
        self.router = self.router.route(path, route);
        self.table.entry(path).or_default().push((method, access));
        self
    }

    /// The router and its table.
    pub fn finish(self) -> (Router<AppState>, RouteTable) {
        (self.router, RouteTable(Arc::new(self.table)))
    }
}

/// The access each (method, route pattern) needs.
#[derive(Clone, Debug)]
pub struct RouteTable(Arc<HashMap<&'static str, Vec<(Method, Access)>>>);

impl RouteTable {
    /// What `method` on the route `pattern` needs; `None` for no such route.
    /// A HEAD needs what the GET needs: axum answers it with the GET's
    /// handler (without the body), so it reads as much.
    pub fn access(&self, method: &Method, pattern: &str) -> Option<Access> {
        let method = if method == Method::HEAD {
            &Method::GET
        } else {
            method
        };
        self.0
            .get(pattern)?
            .iter()
            .find(|(m, _)| m == method)
            .map(|(_, access)| *access)
    }

    /// Every (method, route, access), sorted by route: the table as documented.
    pub fn entries(&self) -> Vec<(Method, &'static str, Access)> {
        let mut entries: Vec<_> = self
            .0
            .iter()
            .flat_map(|(p, methods)| methods.iter().map(|(m, a)| (m.clone(), *p, *a)))
            .collect();
        entries.sort_by(|a, b| (a.1, a.0.as_str()).cmp(&(b.1, b.0.as_str())));
        entries
    }
}

/// Which routes need no token (`[auth]` in the host's settings).
#[derive(Debug, Clone, Copy)]
pub struct OpenRoutes {
    /// `GET /healthz` without a token (default); else any valid token.
    pub healthz: bool,
    /// `GET /metrics` without a token (default); else an operator or viewer token.
    pub metrics: bool,
}

impl Default for OpenRoutes {
    fn default() -> Self {
        OpenRoutes {
            healthz: true,
            metrics: true,
        }
    }
}

/// What [`authorize`] needs.
#[derive(Clone)]
pub struct Guard {
    pub table: RouteTable,
    pub tokens: Arc<Tokens>,
    /// Who a user's credentials belong to (routes for users).
    pub users: Arc<Provisioning>,
}

/// A provisioning user calling a route for users, signed in by their
/// credentials or a user token.
#[derive(Debug, Clone)]
pub struct UserCaller {
    pub user: Arc<User>,
    /// The user token presented; `None` when they gave their password
    /// (HTTP Basic).
    pub token: Option<String>,
}

/// The caller of a route that needs a token (handlers of routes open to
/// services take it to check the service).
#[derive(Debug, Clone)]
pub struct Caller(pub Arc<Principal>);

impl<S: Send + Sync> FromRequestParts<S> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
            ApiError::internal("a handler that needs its caller is on an open route")
        })
    }
}

impl Caller {
    /// 403 unless the caller may act for `service`.
    pub fn acting_for(&self, service: &str) -> Result<(), ApiError> {
        if self.0.acts_for(service) {
            Ok(())
        } else {
            Err(forbidden(format!(
                "token `{}` ({}) may not act for service `{service}`{}",
                self.0.name,
                self.0.role,
                services_of(&self.0)
            )))
        }
    }
}

fn services_of(p: &Principal) -> String {
    if p.services.is_empty() {
        String::new()
    } else {
        format!("; it is for {}", p.services.join(", "))
    }
}

/// Checks the caller's token against what the route needs.
pub async fn authorize(State(guard): State<Guard>, mut request: Request, next: Next) -> Response {
    // No such route, or not with this method: any valid token, then 404/405.
    let access = request
        .extensions()
        .get::<MatchedPath>()
        .and_then(|p| guard.table.access(request.method(), p.as_str()))
        .unwrap_or(Access::Token);
    if access == Access::Open {
        return next.run(request).await;
    }
    if access.for_users() {
        match user_credentials(&request) {
            Some(credentials) => {
                let token = match &credentials {
                    UserCredentials::Token(token) => Some(token.clone()),
                    UserCredentials::Basic { .. } => None,
                };
                return match signed_in(&guard, credentials).await {
                    Ok(user) => {
                        request.extensions_mut().insert(UserCaller {
                            user: Arc::new(user),
                            token,
                        });
                        next.run(request).await
                    }
                    Err(refused) => refuse(request, refused).await,
                };
            }
            None if !request.headers().contains_key(header::AUTHORIZATION) => {
                let refused = unauthorized_user(
                    "this route takes a user's id and password (HTTP Basic) or a user token from `POST /v1/user-tokens`; operators and viewers may read with an API token",
                );
                return refuse(request, refused).await;
            }
            None => {}
        }
    }
    let principal = match bearer(&request) {
        Ok(presented) => caller(&guard, presented).await,
        Err(refused) => Err(refused),
    };
    let refused = match principal {
        Ok(principal) if access.admits(principal.role) => {
            request.extensions_mut().insert(Caller(principal));
            return next.run(request).await;
        }
        Ok(principal) => {
            let verb = if request.method() == Method::GET {
                "read"
            } else {
                "call"
            };
            forbidden(format!(
                "token `{}` has the role {}; to {verb} {} {} takes a token of role {}",
                principal.name,
                principal.role,
                request.method(),
                request
                    .extensions()
                    .get::<MatchedPath>()
                    .map_or("this route", |p| p.as_str()),
                access.roles(),
            ))
            .into_response()
        }
        Err(refused) => refused,
    };
    refuse(request, refused).await
}

/// A user's credentials as presented.
enum UserCredentials {
    Basic { user: String, password: String },
    Token(String),
}

/// `Basic <base64 of id:password>` or `Bearer rhu_…`; `None` for anything
/// else (an API token, or no header).
fn user_credentials(request: &Request) -> Option<UserCredentials> {
    use base64::Engine as _;
    let value = request
        .headers()
        .get(header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, rest) = value.trim().split_once(' ')?;
    let rest = rest.trim();
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = base64::engine::general_purpose::STANDARD.decode(rest).ok();
        let text = decoded
            .and_then(|d| String::from_utf8(d).ok())
            .unwrap_or_default();
        let (user, password) = text.split_once(':').unwrap_or(("", ""));
        return Some(UserCredentials::Basic {
            user: user.to_owned(),
            password: password.to_owned(),
        });
    }
    (scheme.eq_ignore_ascii_case("bearer") && rest.starts_with(crate::provisioning::TOKEN_PREFIX))
        .then(|| UserCredentials::Token(rest.to_owned()))
}

/// The user behind the credentials, or the refusal (401; 429 while locked).
async fn signed_in(guard: &Guard, credentials: UserCredentials) -> Result<User, Response> {
    let users = guard.users.clone();
    let found = match credentials {
        UserCredentials::Basic { user, password } => {
            hashing(move || match users.authenticate(&user, &password) {
                Ok(user) => Ok(Some(user)),
                Err(ProvisioningError::BadCredentials) => Ok(None),
                Err(e) => Err(ApiError::from(e)),
            })
            .await
        }
        UserCredentials::Token(token) => blocking(move || Ok(users.user_of_token(&token)?)).await,
    };
    match found {
        Ok(Some(user)) => Ok(user),
        Ok(None) => Err(unauthorized_user(
            "wrong user id or password, or an unknown or expired user token",
        )),
        Err(e) => Err(e.into_response()),
    }
}

/// A 401 for a route for users: it names both ways in.
fn unauthorized_user(message: &str) -> Response {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    response.headers_mut().insert(
        header::WWW_AUTHENTICATE,
        HeaderValue::from_static(
            "Basic realm=\"rulehost\", charset=\"UTF-8\", Bearer realm=\"rulehost\"",
        ),
    );
    response
}

/// Who the presented token belongs to, or the 401.
async fn caller(guard: &Guard, presented: Presented) -> Result<Arc<Principal>, Response> {
    if let Some(principal) = guard.tokens.cached(&presented) {
        return Ok(principal);
    }
    let tokens = guard.tokens.clone();
    match blocking(move || tokens.lookup(&presented).map_err(ApiError::internal)).await {
        Ok(Some(principal)) => Ok(principal),
        Ok(None) => Err(unauthorized(
            "invalid_token",
            "the API token is unknown or revoked; `rulehost tokens list` shows the valid ones",
        )),
        Err(e) => Err(e.into_response()),
    }
}

/// Answers a refused request after reading what is left of its body (up
/// to [`MAX_BODY`]): answering before would leave the connection unusable
/// for the client's next request (hyper closes it, and a keep-alive client
/// sees its next request fail). A longer body closes the connection instead.
async fn refuse(request: Request, mut refused: Response) -> Response {
    if axum::body::to_bytes(request.into_body(), MAX_BODY)
        .await
        .is_err()
    {
        refused
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    refused
}

/// The well-formed token of `Authorization: Bearer <token>`, or the 401.
#[allow(clippy::result_large_err)] // the error is the answer itself
fn bearer(request: &Request) -> Result<Presented, Response> {
    let Some(value) = request.headers().get(header::AUTHORIZATION) else {
        return Err(unauthorized(
            "",
            "this route needs an API token: send `Authorization: Bearer <token>` (the first operator token is in the file `rulehost serve` named at its first start, `<db>.operator-token`; `rulehost tokens create` makes more)",
        ));
    };
    let token = value
        .to_str()
        .ok()
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        })
        .and_then(Presented::parse);
    token.ok_or_else(|| {
        unauthorized(
            "invalid_token",
            "the Authorization header is not `Bearer rh_<64 hex digits>`",
        )
    })
}

fn unauthorized(error: &str, message: &str) -> Response {
    let mut response =
        ApiError::new(StatusCode::UNAUTHORIZED, "unauthorized", message).into_response();
    let challenge = if error.is_empty() {
        "Bearer realm=\"rulehost\"".to_owned()
    } else {
        format!("Bearer realm=\"rulehost\", error=\"{error}\"")
    };
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, value);
    }
    response
}

pub fn forbidden(message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use axum::body::Body;
    use tower::ServiceExt as _;

    use super::*;
    use crate::auth::Role;
    use crate::entitlement::{self, Entitlement, Settings};
    use crate::flow::{FlowEngine, Roles};
    use crate::http::{Metrics, router, routes};
    use crate::notify::Signal;
    use crate::registry::{Live, Sources};
    use crate::runtime::{Runtime, RuntimeOptions};
    use crate::store::{self, Store};

    /// The route table as the README documents it: changing who may call a
    /// route is a change of this list too.
    #[test]
    fn every_route_has_the_access_the_readme_documents() {
        use Access::*;
        let (_, table) = routes(OpenRoutes::default()).finish();
        let got: Vec<(String, &str, Access)> = table
            .entries()
            .into_iter()
            .map(|(m, p, a)| (m.to_string(), p, a))
            .collect();
        let expected = [
            ("GET", "/healthz", Open),
            ("GET", "/metrics", Open),
            ("POST", "/v1/account-groups/{group}/accounts", Operate),
            ("GET", "/v1/accounts/{id}", ServiceRead),
            ("PUT", "/v1/accounts/{id}", ServiceWrite),
            ("GET", "/v1/accounts/{id}/associations", ServiceRead),
            ("GET", "/v1/accounts/{id}/balance", ServiceRead),
            ("GET", "/v1/accounts/{id}/ledger", ServiceRead),
            ("GET", "/v1/accounts/{id}/preferred-plan", ServiceRead),
            ("PUT", "/v1/accounts/{id}/preferred-plan", ServiceWrite),
            ("POST", "/v1/accounts/{id}/topup", Operate),
            ("POST", "/v1/checks", ServiceWrite),
            ("POST", "/v1/communications", ServiceWrite),
            ("POST", "/v1/communications/{id}/choice", ServiceWrite),
            ("POST", "/v1/communications/{id}/complete", ServiceWrite),
            ("GET", "/v1/decisions", ServiceRead),
            ("GET", "/v1/flow-definitions", Read),
            ("GET", "/v1/flows", Read),
            ("POST", "/v1/flows", Operate),
            ("GET", "/v1/flows/{id}", Read),
            ("POST", "/v1/flows/{id}/cancel", Operate),
            ("POST", "/v1/flows/{id}/demands", Operate),
            ("GET", "/v1/offers", UserWrite),
            ("POST", "/v1/offers", UserWrite),
            ("GET", "/v1/offers/{id}", UserRead),
            ("POST", "/v1/offers/{id}/invitees", UserWrite),
            ("GET", "/v1/offers/{id}/invitees/{iid}", UserRead),
            ("POST", "/v1/organizations", Operate),
            ("GET", "/v1/outbox", Read),
            ("POST", "/v1/outbox/{id}/retry", Operate),
            ("GET", "/v1/permissions", UserRead),
            ("GET", "/v1/plugins", Read),
            ("POST", "/v1/plugins/{name}", Operate),
            ("GET", "/v1/plugins/{name}/history", Read),
            ("POST", "/v1/plugins/{name}/replay", Operate),
            ("POST", "/v1/plugins/{name}/rollback", Operate),
            ("POST", "/v1/reconciliations/{id}/link", ServiceWrite),
            ("GET", "/v1/records", Read),
            ("GET", "/v1/requests/{id}", ServiceRead),
            ("GET", "/v1/services", Read),
            ("POST", "/v1/sessions", ServiceWrite),
            ("GET", "/v1/sessions/{id}", ServiceRead),
            ("POST", "/v1/sessions/{id}/end", ServiceWrite),
            ("GET", "/v1/sessions/{id}/events", ServiceRead),
            ("POST", "/v1/sessions/{id}/events", ServiceWrite),
            ("GET", "/v1/tasks", Read),
            ("POST", "/v1/tasks/{id}/complete", Operate),
            ("POST", "/v1/user-tokens", UserWrite),
            ("POST", "/v1/user-tokens/revoke", UserWrite),
            ("POST", "/v1/users", Operate),
            ("GET", "/v1/users/{id}", UserRead),
            ("GET", "/v1/users/{id}/directory", UserRead),
        ];
        let expected: Vec<(String, &str, Access)> = expected
            .into_iter()
            .map(|(m, p, a)| (m.to_owned(), p, a))
            .collect();
        assert_eq!(got, expected);
        // Only reads are open to viewers; every change needs more. (A
        // user's own list of offers is a read that takes a user.)
        for (method, path, access) in &got {
            let user_only = *access == UserWrite && method == "GET";
            assert_eq!(
                access.admits(Role::Viewer),
                method == "GET" && !user_only,
                "{method} {path}"
            );
        }
        // Closed by `[auth]`: health to any token, metrics to readers.
        let (_, closed) = routes(OpenRoutes {
            healthz: false,
            metrics: false,
        })
        .finish();
        assert_eq!(closed.access(&Method::GET, "/healthz"), Some(Token));
        assert_eq!(closed.access(&Method::GET, "/metrics"), Some(Read));
        assert_eq!(closed.access(&Method::DELETE, "/healthz"), None);
    }

    /// The internal API on an empty rules folder and an in-memory store.
    fn app() -> (tempfile::TempDir, Store, Router) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::in_memory().unwrap();
        let runtime = Runtime::new(RuntimeOptions::default()).unwrap();
        let sources = Sources {
            rules_dir: dir.path().to_owned(),
            plugins_dir: dir.path().to_owned(),
        };
        let (live, _) = Live::start(runtime, sources, store.clone()).unwrap();
        let signal = Arc::new(Signal::default());
        let mut engine = FlowEngine::new(
            store.clone(),
            BTreeMap::new(),
            Roles::default(),
            signal.clone(),
        );
        let installed = entitlement::install(
            &mut engine,
            store.clone(),
            live.registry(),
            Settings::default(),
        );
        let engine = Arc::new(engine);
        let entitlement = Arc::new(Entitlement::new(installed, engine.clone(), signal));
        let plans = Arc::new(crate::plans::Plans::new(
            store.clone(),
            live.registry(),
            crate::plans::Settings::default(),
        ));
        let sessions = Arc::new(crate::sessions::Sessions::new(
            store.clone(),
            live.registry(),
            Arc::new(Signal::default()),
        ));
        let provisioning = Arc::new(crate::provisioning::Provisioning::new(
            store.clone(),
            live.registry(),
            engine.clone(),
            Arc::new(Signal::default()),
            crate::provisioning::Settings::default(),
        ));
        let state = AppState {
            provisioning,
            engine,
            live: Arc::new(live),
            entitlement,
            plans,
            sessions,
            metrics: Arc::new(Metrics::default()),
            pruned: Arc::default(),
            tokens: Arc::new(Tokens::new(store.clone())),
            open: OpenRoutes::default(),
        };
        (dir, store, router(state))
    }

    async fn status(app: &Router, method: &Method, path: &str, token: Option<&str>) -> StatusCode {
        let mut request = Request::builder().method(method).uri(path);
        if let Some(token) = token {
            request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let request = request
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from("{}"))
            .unwrap();
        app.clone().oneshot(request).await.unwrap().status()
    }

    /// Every route of the real router, without a token and with tokens of
    /// roles it does not admit: refused before its handler runs.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_route_of_the_router_refuses_callers_it_does_not_admit() {
        let (_dir, store, app) = app();
        let (_, table) = routes(OpenRoutes::default()).finish();
        let token = |role, services: &[&str]| {
            let services = services.iter().map(|s| (*s).to_owned()).collect();
            crate::auth::create(&store, role, services, None, store::now_ms())
                .unwrap()
                .token
        };
        let viewer = token(Role::Viewer, &[]);
        let service = token(Role::Service, &["support-contract"]);
        let revoked = token(Role::Operator, &[]);
        crate::auth::revoke(&store, "operator", store::now_ms()).unwrap();
        for (method, pattern, access) in table.entries() {
            let path = pattern
                .replace("{id}", "x")
                .replace("{name}", "x")
                .replace("{group}", "x")
                .replace("{iid}", "x");
            let (none, bad, gone) = (
                status(&app, &method, &path, None).await,
                status(&app, &method, &path, Some("rh_nope")).await,
                status(&app, &method, &path, Some(&revoked)).await,
            );
            if access == Access::Open {
                assert_ne!(none, StatusCode::UNAUTHORIZED, "{method} {path}");
                continue;
            }
            for (what, got) in [("no token", none), ("bad token", bad), ("revoked", gone)] {
                assert_eq!(got, StatusCode::UNAUTHORIZED, "{what}: {method} {path}");
            }
            for (role, token) in [(Role::Viewer, &viewer), (Role::Service, &service)] {
                if !access.admits(role) {
                    let got = status(&app, &method, &path, Some(token)).await;
                    assert_eq!(got, StatusCode::FORBIDDEN, "{role}: {method} {path}");
                    // A HEAD reads what its GET reads, so it needs as much.
                    if method == Method::GET {
                        let got = status(&app, &Method::HEAD, &path, Some(token)).await;
                        assert_eq!(got, StatusCode::FORBIDDEN, "{role}: HEAD {path}");
                    }
                }
            }
        }
        // Nor does an unknown route or method answer without a token.
        assert_eq!(
            status(&app, &Method::GET, "/v1/unknown", None).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(&app, &Method::DELETE, "/v1/flows", None).await,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            status(&app, &Method::GET, "/v1/unknown", Some(&viewer)).await,
            StatusCode::NOT_FOUND
        );
    }
}
