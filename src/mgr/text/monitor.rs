//! The htcp_monitor page (cuttle's own): the `htcp=monitor` peers this
//! cache subscribes to with HTCP MON (lease left, objects known,
//! notifications, resyncs, false hits), then this node's own subscribers.
//! One `key=value` line per peer or subscriber, for people and scripts.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::super::{Manager, Sources};
use crate::peers::monitor::monitored;

pub(super) fn htcp_monitor(m: &Manager, s: &Sources<'_>) -> String {
    let now = Instant::now();
    let mut out = String::from("Monitored peers (htcp=monitor):\n");
    for p in s.peers.peers.iter().filter(|p| monitored(&p.config)) {
        let v = p.mon.view(now);
        let addr = p
            .icp_addr
            .map_or_else(|| "-".to_string(), |a| a.to_string());
        let _ = writeln!(
            out,
            "peer {} addr={addr} state={} usable={} lease_left={} objects={} notifications={} notifications_per_sec={:.1} resyncs={} gaps={} refusals={} hits={} false_hits={} overflows={} invalidations={} updates={} refetches_done={} refetches_failed={} changes_dropped={}",
            p.config.name,
            v.phase.name(),
            if v.usable { "yes" } else { "no" },
            v.lease_left.as_secs(),
            v.objects,
            v.notifications,
            v.notifications_per_sec,
            v.resyncs,
            v.gaps,
            v.refusals,
            v.hits,
            v.false_hits,
            v.overflows,
            v.invalidations,
            v.updates,
            v.refetches_done,
            v.refetches_failed,
            v.changes_dropped,
        );
    }
    let c = s.config;
    let _ = writeln!(
        out,
        "Subscribers of this node (htcp_monitor_max_subscribers {}, htcp_monitor_max_lease {} s):",
        c.htcp_monitor_max_subscribers.value,
        c.htcp_monitor_max_lease.value.as_secs()
    );
    for sub in m.mon_publisher.subscribers(now) {
        let secs = sub.since.as_secs_f64().max(1.0);
        let _ = writeln!(
            out,
            "subscriber {} lease_left={} notices={} bytes={} bytes_per_sec={:.0} backlog={}",
            sub.addr,
            sub.lease_left.as_secs(),
            sub.notices,
            sub.bytes,
            sub.bytes as f64 / secs,
            sub.backlog,
        );
    }
    let st = &m.mon_publisher.stats;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let _ = writeln!(
        out,
        "totals accepted={} renewed={} refused={} ended={} notices_sent={} bytes_sent={} send_errors={} feed_overflows={} invalidations_sent={} updates_sent={} changes_dropped={}",
        load(&st.accepted),
        load(&st.renewed),
        load(&st.refused),
        load(&st.ended),
        load(&st.notices_sent),
        load(&st.bytes_sent),
        load(&st.send_errors),
        load(&st.overflows),
        load(&st.invalidations_sent),
        load(&st.updates_sent),
        load(&st.changes_dropped),
    );
    out
}
