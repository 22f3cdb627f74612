//! What `atoll_core::statement_route::read` found for recent statement texts: an
//! application sends the same few texts over and over (prepared statements, ORM queries),
//! so each is lexed once. Bounded (least recently used dropped); long texts are not kept.

use atoll_core::statement_route::{self, RouteError, StatementInfo};
use lru::LruCache;
use std::num::NonZeroUsize;
use std::sync::Mutex;

/// Texts kept at most.
const ENTRIES: usize = 4096;
/// Longer texts are read every time (bulk inserts and the like rarely repeat).
const LONGEST: usize = 4096;

/// The cache, shared by all sessions.
pub struct RouteCache {
    /// Locked only for a lookup or an insert, never across a read of a text.
    entries: Mutex<LruCache<String, Result<StatementInfo, RouteError>>>,
}

impl Default for RouteCache {
    fn default() -> Self {
        let n = NonZeroUsize::new(ENTRIES).unwrap_or(NonZeroUsize::MIN);
        RouteCache {
            entries: Mutex::new(LruCache::new(n)),
        }
    }
}

impl RouteCache {
    /// What `text` says about its routing, from the cache when it was read before.
    pub fn read(&self, text: &str) -> Result<StatementInfo, RouteError> {
        if text.len() > LONGEST {
            return statement_route::read(text);
        }
        if let Some(hit) = self.lock().get(text) {
            return hit.clone();
        }
        let info = statement_route::read(text);
        self.lock().put(text.to_string(), info.clone());
        info
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, LruCache<String, Result<StatementInfo, RouteError>>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_answers_as_the_reader_does() {
        let c = RouteCache::default();
        for text in [
            "select * from sh0001.t",
            "select 1 from sh0001.t, sh0002.t",
            "select '",
        ] {
            let first = c.read(text);
            assert_eq!(first, statement_route::read(text));
            assert_eq!(c.read(text), first, "from the cache");
        }
        let long = format!(
            "select * from sh0003.t where x in ({})",
            "1,".repeat(3000) + "1"
        );
        assert_eq!(c.read(&long), statement_route::read(&long));
        assert_eq!(c.lock().len(), 3);
    }
}
