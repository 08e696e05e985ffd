//! Open sessions, by id: the table, its bounds (`[sessions] max`, and per API key), the
//! reaper that freezes idle sessions and ends those past their idle timeout or lifetime,
//! and the operations the HTTP routes and the MCP tools share. A session lives in the
//! runner (`run::Session`); this only finds it, checks who asks, and takes a run slot
//! while one of its cells runs.
//!
//! Ids are `<boot>-<random>`, `boot` being this daemon's start: an id of an earlier start
//! answers 410 (`session_expired`: the restart ended it), as does one that expired here;
//! one never opened, or closed by its client, 404. No id ever gets a fresh session.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use super::error::ApiError;
use super::routes::Caller;
use super::types::LanguageRef;
use super::types::session::{CellIn, CellOut, SessionIn, SessionOut};
use super::{Api, plan};
use crate::lang::{Availability, Language};
use crate::run::{Cancel, Cell, Driver, FileError, Session, SessionRequest};

/// Ids of ended sessions remembered (to answer 410 rather than 404).
const REMEMBERED: usize = 100_000;
/// How often the reaper looks.
const REAP_EVERY: Duration = Duration::from_millis(250);
/// Largest file read or written through the files routes.
pub(super) const MAX_FILE_BYTES: u64 = 16 << 20;

/// One open session.
#[derive(Debug)]
pub(super) struct Entry {
    pub(super) id: String,
    owner: Caller,
    lang: Language,
    version: String,
    /// `None` once ended (closed or reaped while a request waited for it).
    session: Arc<tokio::sync::Mutex<Option<Session>>>,
    created: Instant,
    last_used: Mutex<Instant>,
    idle_timeout: Duration,
    lifetime: Duration,
    busy: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Default)]
struct Table {
    open: HashMap<String, Arc<Entry>>,
    /// Being opened now (they count against the bounds).
    opening: Vec<Caller>,
    expired: HashSet<String>,
    order: VecDeque<String>,
}

/// The open sessions.
#[derive(Debug)]
pub(super) struct Sessions {
    boot: String,
    table: Mutex<Table>,
}

impl Sessions {
    pub(super) fn new() -> Self {
        let boot = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
        Sessions { boot, table: Mutex::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The session `id` of `caller`: 404 if unknown (or another key's), 410 if it expired.
    pub(super) fn get(&self, id: &str, caller: Caller) -> Result<Arc<Entry>, ApiError> {
        let t = self.lock();
        if let Some(e) = t.open.get(id).filter(|e| owns(caller, e.owner)) {
            return Ok(Arc::clone(e));
        }
        let earlier_boot = id.split_once('-').is_some_and(|(boot, _)| boot.len() == 8 && boot != self.boot);
        if t.expired.contains(id) || earlier_boot {
            return Err(ApiError::SessionExpired(format!(
                "session {id} has expired (idle timeout, lifetime, or a daemon restart); open a new one"
            )));
        }
        Err(ApiError::NoSuchSession(format!("no session {id}")))
    }

    fn forget(&self, id: &str, expired: bool) -> Option<Arc<Entry>> {
        let mut t = self.lock();
        let e = t.open.remove(id)?;
        if expired {
            t.expired.insert(id.to_owned());
            t.order.push_back(id.to_owned());
            while t.order.len() > REMEMBERED {
                if let Some(old) = t.order.pop_front() {
                    t.expired.remove(&old);
                }
            }
        }
        Some(e)
    }
}

fn owns(caller: Caller, owner: Caller) -> bool {
    matches!(caller, Caller::Local) || caller == owner
}

fn driver(lang: &Language) -> (Driver, bool) {
    match lang.id.as_str() {
        "python" => (Driver::Python, true),
        "javascript" => (Driver::JavaScript, true),
        "typescript" => (Driver::TypeScript, true),
        "ruby" => (Driver::Ruby, true),
        "bash" => (Driver::Shell, true),
        _ => (Driver::Shell, false),
    }
}

impl Entry {
    fn describe(&self) -> SessionOut {
        let idle = self.last_used.lock().unwrap_or_else(PoisonError::into_inner).elapsed();
        SessionOut {
            id: self.id.clone(),
            language: LanguageRef { id: self.lang.id.clone(), version: self.version.clone() },
            stateful: driver(&self.lang).1,
            idle_timeout_s: self.idle_timeout.as_secs(),
            max_lifetime_s: self.lifetime.as_secs(),
            age_s: self.created.elapsed().as_secs(),
            idle_s: idle.as_secs(),
            busy: self.busy.load(std::sync::atomic::Ordering::SeqCst),
        }
    }

    fn touch(&self) {
        *self.last_used.lock().unwrap_or_else(PoisonError::into_inner) = Instant::now();
    }
}

/// Opens a session for `caller`.
pub(super) async fn create(api: &Arc<Api>, dto: SessionIn, caller: Caller) -> Result<SessionOut, ApiError> {
    let (lang, version) = language(api, &dto.language, dto.version.as_deref())?;
    let bounds = api.policy.sessions;
    let idle_timeout = seconds("idle_timeout_s", dto.idle_timeout_s, bounds.idle_timeout, bounds.max_idle_timeout)?;
    let lifetime = seconds("max_lifetime_s", dto.max_lifetime_s, bounds.max_lifetime, bounds.max_lifetime)?;
    let defaults = plan::language_defaults(&lang, &api.policy.default_limits, &api.policy.max_limits);
    let table = plan::limit_table(&defaults, &api.policy.max_limits, dto.limits.unwrap_or_default(), "limits")?;
    let mut limits = plan::to_limits(&table)?;
    // CPU time spans the session (its driver's RLIMIT_CPU), up to the most a limit allows
    limits.cpu_time = lifetime.min(Duration::from_secs(3600));
    let req = SessionRequest { driver: driver(&lang).0, limits, root: lang.placement.root, env: lang_env(&lang) };
    reserve(api, caller)?;
    let api2 = Arc::clone(api);
    let opened = tokio::task::spawn_blocking(move || match api2.executor.sessions() {
        Some(runner) => runner.open_session(&req).map_err(ApiError::from),
        None => Err(ApiError::Invalid("this daemon's executor has no sessions".into())),
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the session's thread failed: {e}")));
    let id = format!("{}-{}", api.sessions.boot, uuid::Uuid::new_v4().simple());
    let mut t = api.sessions.lock();
    if let Some(i) = t.opening.iter().position(|c| *c == caller) {
        t.opening.remove(i);
    }
    let session = opened??;
    let entry = Arc::new(Entry {
        id: id.clone(),
        owner: caller,
        lang,
        version,
        session: Arc::new(tokio::sync::Mutex::new(Some(session))),
        created: Instant::now(),
        last_used: Mutex::new(Instant::now()),
        idle_timeout,
        lifetime,
        busy: std::sync::atomic::AtomicBool::new(false),
    });
    let out = entry.describe();
    t.open.insert(id, entry);
    Ok(out)
}

/// Counts `caller` in, or refuses when a bound is reached.
fn reserve(api: &Api, caller: Caller) -> Result<(), ApiError> {
    let bounds = api.policy.sessions;
    let mut t = api.sessions.lock();
    if t.open.len() + t.opening.len() >= bounds.max {
        return Err(ApiError::SessionsFull(format!("{} sessions are open, the most this daemon keeps", bounds.max)));
    }
    if let Caller::Key(_) = caller {
        let mine =
            t.open.values().filter(|e| e.owner == caller).count() + t.opening.iter().filter(|c| **c == caller).count();
        if mine >= bounds.max_per_key {
            return Err(ApiError::SessionsFull(format!(
                "this key has {mine} sessions open, the most one key may have ({})",
                bounds.max_per_key
            )));
        }
    }
    t.opening.push(caller);
    Ok(())
}

fn language(api: &Api, name: &str, version: Option<&str>) -> Result<(Language, String), ApiError> {
    let (lang, availability) = api.languages.find(name).map_err(|e| ApiError::Invalid(e.to_string()))?;
    let found = match availability {
        Availability::Available { version } => version.clone(),
        Availability::Unavailable { reason } => {
            return Err(ApiError::Invalid(format!("language {} is not available here: {reason}", lang.id)));
        }
    };
    if let Some(v) = version.filter(|v| !found.contains(*v)) {
        return Err(ApiError::Invalid(format!("language {} has version {found:?} here, not {v:?}", lang.id)));
    }
    Ok((lang.clone(), found))
}

fn lang_env(lang: &Language) -> Vec<(String, String)> {
    lang.env.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

fn seconds(name: &str, asked: Option<u64>, default: Duration, max: Duration) -> Result<Duration, ApiError> {
    match asked {
        None => Ok(default),
        Some(s) if s >= 1 && s <= max.as_secs() => Ok(Duration::from_secs(s)),
        Some(s) => Err(ApiError::Invalid(format!("{name} = {s}: must be 1 to {}", max.as_secs()))),
    }
}

/// Runs one cell in session `id`, holding a run slot while it runs.
pub(super) async fn execute(
    api: &Arc<Api>,
    id: &str,
    dto: CellIn,
    caller: Caller,
    request_id: &str,
) -> Result<CellOut, ApiError> {
    let entry = api.sessions.get(id, caller)?;
    if dto.code.len() > crate::run::MAX_CODE_BYTES {
        return Err(ApiError::Invalid(format!(
            "code has {} bytes; at most {}",
            dto.code.len(),
            crate::run::MAX_CODE_BYTES
        )));
    }
    let max = api.policy.max_limits.wall_time_ms;
    let timeout_ms = match dto.timeout_ms {
        None => plan::language_defaults(&entry.lang, &api.policy.default_limits, &api.policy.max_limits).wall_time_ms,
        Some(t) if (1..=max).contains(&t) => t,
        Some(t) => return Err(ApiError::Invalid(format!("timeout_ms = {t}: must be 1 to {max}"))),
    };
    let code = cell_code(&entry, dto.code)?;
    let ticket = api.limiter.admit()?;
    let slot = api.limiter.slot(ticket).await?;
    let mut guard = Arc::clone(&entry.session).lock_owned().await;
    if guard.is_none() {
        return Err(api.sessions.get(id, caller).err().unwrap_or(ApiError::NoSuchSession(format!("no session {id}"))));
    }
    entry.busy.store(true, std::sync::atomic::Ordering::SeqCst);
    let cancel = Cancel::new()?;
    let cell = Cell { code, timeout: Duration::from_millis(timeout_ms), cancel: Some(cancel.clone()) };
    let mut canceller = CancelOnDrop(Some(cancel));
    let (guard, outcome) = tokio::task::spawn_blocking(move || {
        let outcome = guard.as_mut().map(|s| s.execute(&cell));
        drop(slot);
        (guard, outcome)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("the cell's thread failed: {e}")))?;
    canceller.0 = None;
    entry.busy.store(false, std::sync::atomic::Ordering::SeqCst);
    entry.touch();
    let outcome = outcome.ok_or_else(|| ApiError::NoSuchSession(format!("no session {id}")))?;
    let alive = outcome.alive;
    let lang = LanguageRef { id: entry.lang.id.clone(), version: entry.version.clone() };
    let out = CellOut::new(request_id, id, outcome, lang);
    drop(guard);
    if !alive {
        end(api, id, true).await;
    }
    Ok(out)
}

/// Fires the cell's cancel when the request goes away before the cell ends (the session
/// ends with it: a cell cannot be stopped alone in every language).
struct CancelOnDrop(Option<Cancel>);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.cancel();
        }
    }
}

/// The code a cell runs: as given for the stateful languages; for the others, the source
/// is written to the language's main file and the cell compiles and runs it.
fn cell_code(entry: &Entry, code: String) -> Result<String, ApiError> {
    if driver(&entry.lang).1 {
        return Ok(code);
    }
    let main = &entry.lang.main_file;
    let quoted = shell_quote(&code);
    let write = format!("printf '%s' {quoted} > {}", shell_quote(main));
    let run = command(&entry.lang, &entry.lang.run.command);
    Ok(match &entry.lang.compile {
        Some(c) => format!("{write} && {} && {run}\n", command(&entry.lang, &c.command)),
        None => format!("{write} && {run}\n"),
    })
}

/// A stage's command with its placeholders for a one-file program, quoted for the shell.
fn command(lang: &Language, argv: &[String]) -> String {
    let stem = lang.main_file.rsplit_once('.').map_or(lang.main_file.as_str(), |(s, _)| s);
    argv.iter()
        .map(|a| {
            let a = a
                .replace("{main}", &lang.main_file)
                .replace("{sources}", &lang.main_file)
                .replace("{main_stem}", stem)
                .replace("{main_class}", stem)
                .replace("{memory_mb}", "256")
                .replace("{heap_mb}", "192")
                .replace("{cpus}", "1");
            shell_quote(&a)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// Ends session `id` (closed by its client: `expired` false; by the reaper or a dead
/// driver: true, so its id answers 410).
pub(super) async fn end(api: &Arc<Api>, id: &str, expired: bool) -> bool {
    let Some(entry) = api.sessions.forget(id, expired) else { return false };
    let session = entry.session.lock().await.take();
    if let Some(s) = session {
        let api = Arc::clone(api);
        let _ = tokio::task::spawn_blocking(move || {
            if let Some(runner) = api.executor.sessions() {
                runner.close_session(s);
            }
        })
        .await;
    }
    true
}

/// Closes session `id` of `caller` (404 when there is none).
pub(super) async fn close(api: &Arc<Api>, id: &str, caller: Caller) -> Result<(), ApiError> {
    api.sessions.get(id, caller)?;
    end(api, id, false).await;
    Ok(())
}

/// The caller's open sessions.
pub(super) fn list(api: &Api, caller: Caller) -> Vec<SessionOut> {
    let t = api.sessions.lock();
    let mut out: Vec<SessionOut> = t.open.values().filter(|e| owns(caller, e.owner)).map(|e| e.describe()).collect();
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// A file operation on session `id`, on a blocking thread (the session's lock held: not
/// during a cell). Frozen sessions need no thawing: the host reads their tmpfs.
pub(super) async fn with_files<T: Send + 'static>(
    api: &Api,
    id: &str,
    caller: Caller,
    op: impl FnOnce(&Session) -> Result<T, FileError> + Send + 'static,
) -> Result<T, ApiError> {
    let entry = api.sessions.get(id, caller)?;
    let guard = Arc::clone(&entry.session).lock_owned().await;
    let done = tokio::task::spawn_blocking(move || guard.as_ref().map(op))
        .await
        .map_err(|e| ApiError::Internal(format!("the file's thread failed: {e}")))?;
    entry.touch();
    match done {
        None => Err(ApiError::NoSuchSession(format!("no session {id}"))),
        Some(Ok(v)) => Ok(v),
        Some(Err(FileError::NotFound(p))) => Err(ApiError::NoSuchSession(format!("no file {p:?} in session {id}"))),
        Some(Err(
            e @ (FileError::BadPath(_) | FileError::NotAFile(_) | FileError::TooLarge { .. } | FileError::NoSpace),
        )) => Err(ApiError::Invalid(e.to_string())),
        Some(Err(e)) => Err(ApiError::Internal(crate::error_chain(&e))),
    }
}

/// Starts the reaper (inside the runtime): every quarter second, idle sessions are
/// frozen and those past their idle timeout or lifetime ended.
/// The reaper holds the API weakly: it ends when the API does (which closes the job
/// store and ends every session with the runner).
pub(super) fn start(api: &Arc<Api>) {
    let api = Arc::downgrade(api);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(REAP_EVERY);
        loop {
            tick.tick().await;
            let Some(api) = api.upgrade() else { return };
            reap(&api).await;
        }
    });
}

async fn reap(api: &Arc<Api>) {
    let freeze_after = api.policy.sessions.freeze_after;
    let entries: Vec<Arc<Entry>> = api.sessions.lock().open.values().cloned().collect();
    for e in entries {
        let idle = e.last_used.lock().unwrap_or_else(PoisonError::into_inner).elapsed();
        let Ok(mut guard) = Arc::clone(&e.session).try_lock_owned() else { continue };
        if idle >= e.idle_timeout || e.created.elapsed() >= e.lifetime {
            drop(guard);
            tracing::info!(session = %e.id, idle_s = idle.as_secs(), "session expired");
            end(api, &e.id, true).await;
        } else if idle >= freeze_after && guard.as_ref().is_some_and(|s| !s.is_frozen()) {
            let _ = tokio::task::spawn_blocking(move || {
                if let Some(s) = guard.as_mut()
                    && let Err(err) = s.freeze()
                {
                    tracing::debug!(error = %crate::error_chain(&err), "an idle session could not be frozen");
                }
            })
            .await;
        }
    }
}
