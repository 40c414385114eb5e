//! The one wasmtime `Engine` and `Linker` every plugin runs on.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::RuntimeError;
use super::bindings::{v0_1, v0_2, v0_3};
use super::cache::CompileCache;
use super::state::StoreState;

/// How often the epoch advances; time limits are counted in these ticks.
pub(crate) const EPOCH_TICK: Duration = Duration::from_millis(1);

/// How the runtime is set up.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Where compiled components are cached; `None` compiles every time.
    pub cache_dir: Option<PathBuf>,
    /// Count fuel (wasm instructions, roughly) per call: deterministic cost
    /// figures for the sandbox harness, at some cost in speed.
    pub fuel: bool,
    /// Instance slots in the pooling allocator: the most plugin instances,
    /// warm or busy, that can exist at once.
    pub max_instances: u32,
    /// The largest memory limit any service may set, in bytes.
    pub max_memory_bytes: u64,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            cache_dir: None,
            fuel: false,
            max_instances: 128,
            max_memory_bytes: 256 << 20,
        }
    }
}

/// The engine, linker and compile cache; cheap to clone.
#[derive(Clone)]
pub struct Runtime {
    pub(crate) inner: Arc<RuntimeInner>,
}

pub(crate) struct RuntimeInner {
    pub(crate) engine: Engine,
    pub(crate) linker: Linker<StoreState>,
    pub(crate) cache: Option<CompileCache>,
    pub(crate) options: RuntimeOptions,
}

impl Runtime {
    pub fn new(options: RuntimeOptions) -> Result<Self, RuntimeError> {
        let engine = Engine::new(&engine_config(&options)).map_err(RuntimeError::engine)?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(RuntimeError::engine)?;
        v0_1::rulehost::plugin::host::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(RuntimeError::engine)?;
        v0_2::rulehost::plugin::host::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(RuntimeError::engine)?;
        v0_3::rulehost::plugin::host::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s)
            .map_err(RuntimeError::engine)?;
        let cache = match &options.cache_dir {
            Some(dir) => {
                Some(
                    CompileCache::new(dir, &engine).map_err(|e| RuntimeError::Cache {
                        dir: dir.clone(),
                        source: e,
                    })?,
                )
            }
            None => None,
        };
        start_epoch_ticker(&engine).map_err(RuntimeError::Ticker)?;
        Ok(Runtime {
            inner: Arc::new(RuntimeInner {
                engine,
                linker,
                cache,
                options,
            }),
        })
    }

    pub fn options(&self) -> &RuntimeOptions {
        &self.inner.options
    }
}

/// Pooling allocator sized for a small host rather than wasmtime's defaults
/// (1000 slots of everything, terabytes of reserved address space). Each
/// memory slot keeps wasmtime's 4 GiB reservation, so plugin code runs
/// without explicit bounds checks; 128 slots reserve about 0.5 TiB of
/// address space and no physical memory beyond what plugins touch.
/// `linear_memory_keep_resident` with `pagemap_scan` makes reusing a slot
/// cheap: only the pages a plugin dirtied are reset.
fn engine_config(options: &RuntimeOptions) -> Config {
    let slots = options.max_instances.max(1);
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(slots)
        .total_core_instances(slots * 8)
        .total_memories(slots)
        .total_tables(slots * 4)
        .total_stacks(slots)
        .max_memories_per_component(2)
        .max_core_instances_per_component(16)
        .max_tables_per_component(8)
        .max_memory_size(usize::try_from(options.max_memory_bytes).unwrap_or(usize::MAX))
        .linear_memory_keep_resident(1 << 20)
        .table_keep_resident(64 << 10)
        .pagemap_scan(Enabled::Auto);
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .consume_fuel(options.fuel)
        .allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    config
}

/// Advances the engine's epoch every tick until the engine is dropped.
fn start_epoch_ticker(engine: &Engine) -> std::io::Result<()> {
    let weak = engine.weak();
    std::thread::Builder::new()
        .name("rulehost-epoch".into())
        .spawn(move || {
            while let Some(engine) = weak.upgrade() {
                engine.increment_epoch();
                drop(engine);
                std::thread::sleep(EPOCH_TICK);
            }
        })
        .map(drop)
}
