//! Range and prefix scans, and how their pages chain together.
//!
//! The server returns at most one page per request, with `more` and `next_start` saying where
//! to continue. A [`Scan`] describes the whole scan; [`Client::scan_page`](crate::Client::scan_page)
//! runs one request and returns the page together with the `Scan` for the rest, and
//! [`Client::scan`](crate::Client::scan) follows those continuations until the limit is met or
//! the range is exhausted. Each page is its own read: pages are consistent one by one, not with
//! each other.

use std::ops::Range;

use bytes::Bytes;
use islab_proto::v1 as proto;

use crate::error::{Error, Result};
use crate::kv::{KeyValue, ReadConsistency};
use crate::router::{Router, read_route};

/// What to scan: keys in `[start, end)` (empty `end`: no upper bound) that begin with a
/// prefix, in key order, up to a limit.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Scan {
    start: Bytes,
    end: Bytes,
    prefix: Bytes,
    limit: Option<usize>,
    page_size: Option<u32>,
    consistency: ReadConsistency,
}

impl Scan {
    /// Every key.
    pub fn all() -> Self {
        Scan::default()
    }

    /// Keys that begin with `prefix`.
    pub fn prefix(prefix: impl Into<Bytes>) -> Self {
        Scan {
            prefix: prefix.into(),
            ..Scan::default()
        }
    }

    /// Keys in `start..end` (start included, end excluded).
    pub fn range<K: Into<Bytes>>(range: Range<K>) -> Self {
        Scan {
            start: range.start.into(),
            end: range.end.into(),
            ..Scan::default()
        }
    }

    /// Keys from `start` (included) to the last key.
    pub fn from_key(start: impl Into<Bytes>) -> Self {
        Scan {
            start: start.into(),
            ..Scan::default()
        }
    }

    /// Return at most `n` items in all (0: no limit, scan to the end).
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = (n > 0).then_some(n);
        self
    }

    /// Ask for at most `n` items per request (0: the server's default page size).
    pub fn page_size(mut self, n: u32) -> Self {
        self.page_size = (n > 0).then_some(n);
        self
    }

    /// Read with this consistency (default: linearizable).
    pub fn consistency(mut self, consistency: ReadConsistency) -> Self {
        self.consistency = consistency;
        self
    }

    /// Where the (rest of the) scan starts; empty: at the first key.
    pub fn start_key(&self) -> &Bytes {
        &self.start
    }

    /// Where the scan stops (excluded); empty: no upper bound.
    pub fn end_key(&self) -> &Bytes {
        &self.end
    }

    /// The prefix every returned key has; empty: any key.
    pub fn key_prefix(&self) -> &Bytes {
        &self.prefix
    }

    /// Items still wanted; `None`: no limit.
    pub fn remaining(&self) -> Option<usize> {
        self.limit
    }

    /// The consistency the scan reads with.
    pub fn read_consistency(&self) -> ReadConsistency {
        self.consistency
    }

    /// The request for the next page.
    pub(crate) fn request(&self) -> proto::ScanRequest {
        let want = match (self.limit, self.page_size) {
            (Some(n), Some(p)) => n.min(p as usize),
            (Some(n), None) => n,
            (None, Some(p)) => p as usize,
            (None, None) => 0,
        };
        proto::ScanRequest {
            start: self.start.clone(),
            end: self.end.clone(),
            prefix: self.prefix.clone(),
            limit: u32::try_from(want).unwrap_or(u32::MAX),
            consistency: self.consistency.to_proto(),
            shard: 0,
        }
    }

    /// Turns the server's answer to [`Scan::request`] into a page and the scan of the rest.
    pub(crate) fn page(&self, response: proto::ScanResponse) -> Result<ScanPage> {
        let mut items: Vec<KeyValue> = response.items.into_iter().map(Into::into).collect();
        if let Some(n) = self.limit {
            items.truncate(n);
        }
        let remaining = self.limit.map(|n| n - items.len());
        if remaining == Some(0) || !response.more {
            return Ok(ScanPage { items, next: None });
        }
        let next_start = response.next_start;
        if next_start.is_empty() || (!self.start.is_empty() && next_start <= self.start) {
            return Err(Error::Protocol(format!(
                "scan page says there is more but continues at {next_start:?}, not after {:?}",
                self.start
            )));
        }
        if !self.end.is_empty() && next_start >= self.end {
            return Ok(ScanPage { items, next: None });
        }
        let next = Scan {
            start: next_start,
            limit: remaining,
            ..self.clone()
        };
        Ok(ScanPage {
            items,
            next: Some(next),
        })
    }
}

/// One page of a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScanPage {
    /// The items of this page, in key order.
    pub items: Vec<KeyValue>,
    /// The scan of the rest; `None` when the range is exhausted or the limit reached.
    pub next: Option<Scan>,
}

/// One page of `scan` (see [`Client::scan_page`](crate::Client::scan_page)): every shard
/// asked for its next keys, in parallel, and the answers merged.
pub(crate) async fn scan_page(router: &Router, scan: &Scan) -> Result<ScanPage> {
    router.ensure_map().await?;
    let route = read_route(scan.read_consistency());
    let request = scan.request();
    let shards: Vec<u64> = match router.endpoints.map() {
        Some(map) if map.shards.len() > 1 => map.shards.iter().map(|s| s.id).collect(),
        // One shard (or no map yet): the server knows which.
        _ => vec![0],
    };
    let pages = shards.iter().map(|&shard| {
        let message = proto::ScanRequest {
            shard,
            ..request.clone()
        };
        router.kv("Scan", route, shard, message, |mut c, r| async move {
            c.scan(r).await
        })
    });
    let pages = futures::future::try_join_all(pages).await?;
    scan.page(merge_pages(pages, request.limit as usize))
}

/// Merges one scan page from each shard into the next keys in order: all keys up to the
/// first point where some shard still has more (beyond it, that shard's keys are unknown),
/// at most `limit` of them (0: no limit beyond the pages').
fn merge_pages(pages: Vec<proto::ScanResponse>, limit: usize) -> proto::ScanResponse {
    let cutoff: Option<Bytes> = pages
        .iter()
        .filter(|p| p.more)
        .filter_map(|p| p.items.last().map(|kv| kv.key.clone()))
        .min();
    let some_more = pages.iter().any(|p| p.more);
    let mut items: Vec<proto::KeyValue> = pages
        .into_iter()
        .flat_map(|p| p.items)
        .filter(|kv| cutoff.as_ref().is_none_or(|c| kv.key <= *c))
        .collect();
    items.sort_by(|a, b| a.key.cmp(&b.key));
    let mut more = some_more;
    if limit > 0 && items.len() > limit {
        items.truncate(limit);
        more = true;
    }
    let next_start = match (more, items.last()) {
        (true, Some(last)) => {
            let mut next = last.key.to_vec();
            next.push(0);
            Bytes::from(next)
        }
        _ => Bytes::new(),
    };
    proto::ScanResponse {
        items,
        more: more && !next_start.is_empty(),
        next_start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &'static str) -> proto::KeyValue {
        proto::KeyValue {
            key: Bytes::from_static(key.as_bytes()),
            value: Bytes::from_static(b"v"),
            version: 1,
        }
    }

    fn response(keys: &[&'static str], next_start: Option<&'static str>) -> proto::ScanResponse {
        proto::ScanResponse {
            items: keys.iter().map(|k| kv(k)).collect(),
            more: next_start.is_some(),
            next_start: next_start.map(Bytes::from).unwrap_or_default(),
        }
    }

    #[test]
    fn requests_ask_for_what_is_still_wanted() {
        assert_eq!(Scan::all().request().limit, 0);
        assert_eq!(Scan::all().limit(7).request().limit, 7);
        assert_eq!(Scan::all().page_size(5).request().limit, 5);
        assert_eq!(Scan::all().limit(3).page_size(5).request().limit, 3);
        let r = Scan::range("a".."m")
            .consistency(ReadConsistency::Serializable)
            .request();
        assert_eq!(
            (&r.start[..], &r.end[..], r.consistency),
            (&b"a"[..], &b"m"[..], 1)
        );
        assert_eq!(&Scan::prefix("user/").request().prefix[..], b"user/");
    }

    #[test]
    fn pages_continue_at_next_start_with_the_limit_reduced() {
        let scan = Scan::prefix("u/").limit(5);
        let page = scan.page(response(&["u/1", "u/2"], Some("u/2\0"))).unwrap();
        assert_eq!(page.items.len(), 2);
        let next = page.next.unwrap();
        assert_eq!(&next.start_key()[..], b"u/2\0");
        assert_eq!(next.remaining(), Some(3));
        assert_eq!(next.key_prefix(), scan.key_prefix());

        // The limit is met: stop even though the server has more.
        let page = next
            .page(response(&["u/3", "u/4", "u/5", "u/6"], Some("u/6\0")))
            .unwrap();
        assert_eq!(page.items.len(), 3, "never more than the limit");
        assert_eq!(page.next, None);
    }

    #[test]
    fn the_last_page_has_no_continuation() {
        let page = Scan::all().page(response(&["a"], None)).unwrap();
        assert_eq!(page.next, None);
        let page = Scan::range("a".."b")
            .page(response(&["a"], Some("b")))
            .unwrap();
        assert_eq!(page.next, None, "continuing at the end bound means done");
    }

    #[test]
    fn a_continuation_that_does_not_advance_is_refused() {
        let scan = Scan::from_key("k");
        let mut stuck = response(&[], None);
        stuck.more = true;
        assert!(matches!(scan.page(stuck.clone()), Err(Error::Protocol(_))));
        stuck.next_start = Bytes::from_static(b"k");
        assert!(matches!(scan.page(stuck), Err(Error::Protocol(_))));
    }
}
