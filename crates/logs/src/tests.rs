use super::*;
use std::time::Duration;

fn store() -> (tempfile::TempDir, LogStore) {
    let d = tempfile::tempdir().unwrap();
    let s = LogStore::open(d.path().join("logs")).unwrap();
    (d, s)
}

fn q(from: ReadFrom, limit: usize) -> GetQuery {
    GetQuery {
        start: None,
        end: None,
        limit,
        max_bytes: 1 << 20,
        from,
    }
}

fn msgs(ev: &[Event]) -> Vec<String> {
    ev.iter().map(|e| e.message.clone()).collect()
}

fn put(s: &LogStore, g: &str, st: &str, evs: &[(i64, String)]) {
    let v: Vec<(i64, &str)> = evs.iter().map(|(t, m)| (*t, m.as_str())).collect();
    s.put_events(g, st, &v, now_ms()).unwrap();
}

fn setup(s: &LogStore) {
    s.create_group(GroupSettings::new("/ecs/app")).unwrap();
    s.create_stream("/ecs/app", "web/1").unwrap();
}

#[test]
fn create_delete_and_errors() {
    let (_d, s) = store();
    setup(&s);
    assert!(matches!(
        s.create_group(GroupSettings::new("/ecs/app")),
        Err(LogError::GroupExists)
    ));
    assert!(matches!(
        s.create_stream("/ecs/app", "web/1"),
        Err(LogError::StreamExists)
    ));
    assert!(matches!(
        s.create_stream("nope", "x"),
        Err(LogError::GroupNotFound)
    ));
    assert!(matches!(
        s.put_events("/ecs/app", "nope", &[(1, "x")], 1),
        Err(LogError::StreamNotFound)
    ));
    assert!(matches!(
        s.put_events("/ecs/app", "web/1", &[(2, "x"), (1, "y")], 1),
        Err(LogError::Invalid(_))
    ));
    s.delete_stream("/ecs/app", "web/1").unwrap();
    assert!(matches!(
        s.delete_stream("/ecs/app", "web/1"),
        Err(LogError::StreamNotFound)
    ));
    s.delete_group("/ecs/app").unwrap();
    assert!(s.list_groups().is_empty());
    assert!(matches!(
        s.delete_group("/ecs/app"),
        Err(LogError::GroupNotFound)
    ));
}

#[test]
fn forward_backward_and_positions() {
    let (_d, s) = store();
    setup(&s);
    let evs: Vec<(i64, String)> = (0..10).map(|i| (1000 + i, format!("m{i}"))).collect();
    put(&s, "/ecs/app", "web/1", &evs);
    let head = s
        .get_events("/ecs/app", "web/1", &q(ReadFrom::Head, 3))
        .unwrap();
    assert_eq!(msgs(&head), ["m0", "m1", "m2"]);
    let next = s
        .get_events(
            "/ecs/app",
            "web/1",
            &q(ReadFrom::After(head[2].position), 3),
        )
        .unwrap();
    assert_eq!(msgs(&next), ["m3", "m4", "m5"]);
    let back = s
        .get_events(
            "/ecs/app",
            "web/1",
            &q(ReadFrom::Before(next[0].position), 2),
        )
        .unwrap();
    assert_eq!(msgs(&back), ["m1", "m2"]);
    let tail = s
        .get_events("/ecs/app", "web/1", &q(ReadFrom::Tail, 4))
        .unwrap();
    assert_eq!(msgs(&tail), ["m6", "m7", "m8", "m9"]);
    let end = s
        .get_events(
            "/ecs/app",
            "web/1",
            &q(ReadFrom::After(tail[3].position), 4),
        )
        .unwrap();
    assert!(end.is_empty());
    // Time range: start inclusive, end exclusive.
    let mut r = q(ReadFrom::Head, 100);
    r.start = Some(1003);
    r.end = Some(1006);
    assert_eq!(
        msgs(&s.get_events("/ecs/app", "web/1", &r).unwrap()),
        ["m3", "m4", "m5"]
    );
    r.from = ReadFrom::Tail;
    assert_eq!(
        msgs(&s.get_events("/ecs/app", "web/1", &r).unwrap()),
        ["m3", "m4", "m5"]
    );
    let p = head[1].position;
    assert_eq!(Position::from_digits(&p.to_digits()), Some(p));
    assert_eq!(p.to_digits().len(), 56);
    assert!(Position::from_digits("f/123").is_none());
}

#[test]
fn out_of_order_batches_are_merged_by_timestamp() {
    let (_d, s) = store();
    setup(&s);
    put(
        &s,
        "/ecs/app",
        "web/1",
        &[(100, "a100".into()), (300, "a300".into())],
    );
    put(
        &s,
        "/ecs/app",
        "web/1",
        &[(200, "b200".into()), (400, "b400".into())],
    );
    put(&s, "/ecs/app", "web/1", &[(150, "c150".into())]);
    let all = s
        .get_events("/ecs/app", "web/1", &q(ReadFrom::Head, 100))
        .unwrap();
    assert_eq!(msgs(&all), ["a100", "c150", "b200", "a300", "b400"]);
    // Page through forward one at a time and backward one at a time.
    let mut seen = vec![];
    let mut from = ReadFrom::Head;
    loop {
        let page = s.get_events("/ecs/app", "web/1", &q(from, 1)).unwrap();
        let Some(e) = page.last() else { break };
        seen.push(e.message.clone());
        from = ReadFrom::After(e.position);
    }
    assert_eq!(seen, msgs(&all));
    let mut back = vec![];
    let mut from = ReadFrom::Tail;
    loop {
        let page = s.get_events("/ecs/app", "web/1", &q(from, 2)).unwrap();
        let Some(e) = page.first() else { break };
        for x in page.iter().rev() {
            back.push(x.message.clone());
        }
        from = ReadFrom::Before(e.position);
    }
    back.reverse();
    assert_eq!(back, msgs(&all));
    let info = &s.list_streams("/ecs/app").unwrap()[0];
    assert_eq!(info.first_event_timestamp, Some(100));
    assert_eq!(info.last_event_timestamp, Some(400));
    assert!(info.stored_bytes > 0);
}

#[test]
fn time_index_seeks_in_large_segments() {
    let (_d, s) = store();
    setup(&s);
    let base = 1_700_000_000_000i64;
    let payload = "x".repeat(200);
    for b in 0..20 {
        let evs: Vec<(i64, String)> = (0..1000)
            .map(|i| (base + b * 1000 + i, format!("{} {payload}", b * 1000 + i)))
            .collect();
        put(&s, "/ecs/app", "web/1", &evs);
    }
    let mut r = q(ReadFrom::Head, 5);
    r.start = Some(base + 12_345);
    let got = s.get_events("/ecs/app", "web/1", &r).unwrap();
    assert_eq!(got[0].timestamp, base + 12_345);
    assert_eq!(got.len(), 5);
    r.from = ReadFrom::Tail;
    r.end = Some(base + 15_000);
    let got = s.get_events("/ecs/app", "web/1", &r).unwrap();
    assert_eq!(
        got.iter().map(|e| e.timestamp).collect::<Vec<_>>(),
        (base + 14_995..base + 15_000).collect::<Vec<_>>()
    );
    // Byte limit.
    let mut r = q(ReadFrom::Head, 10_000);
    r.max_bytes = 10 * 1024;
    let got = s.get_events("/ecs/app", "web/1", &r).unwrap();
    assert!(got.len() < 60 && !got.is_empty());
    // Segments rolled at the size limit: > 1 segment, all readable.
    let mut r = q(ReadFrom::Head, 100_000);
    r.max_bytes = usize::MAX;
    let all = s.get_events("/ecs/app", "web/1", &r).unwrap();
    assert_eq!(all.len(), 20_000);
    assert!(all.windows(2).all(|w| w[0].timestamp <= w[1].timestamp));
}

#[test]
fn restart_keeps_everything_and_recovers_torn_tail() {
    let d = tempfile::tempdir().unwrap();
    let dir = d.path().join("logs");
    {
        let s = LogStore::open(&dir).unwrap();
        setup(&s);
        s.create_stream("/ecs/app", "other").unwrap();
        s.update_group("/ecs/app", |g| {
            g.retention_in_days = Some(7);
            g.tags.insert("team".into(), "a".into());
            Ok(())
        })
        .unwrap();
        put(
            &s,
            "/ecs/app",
            "web/1",
            &[(10, "one".into()), (20, "two".into())],
        );
        put(&s, "/ecs/app", "web/1", &[(5, "early".into())]); // new segment
        s.flush().unwrap();
    }
    // Simulate a torn write at the end of the newest segment.
    let seg = fs::read_dir(&dir).unwrap().count(); // groups/ (+trash)
    assert!(seg >= 1);
    let stream_dir = walk(&dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .max()
        .unwrap();
    let mut f = fs::OpenOptions::new()
        .append(true)
        .open(&stream_dir)
        .unwrap();
    f.write_all(&[9, 0, 0, 0, 1, 2]).unwrap();
    drop(f);
    let s = LogStore::open(&dir).unwrap();
    let g = s.group_settings("/ecs/app").unwrap();
    assert_eq!(g.retention_in_days, Some(7));
    assert_eq!(g.tags.get("team").map(String::as_str), Some("a"));
    let names: Vec<String> = s
        .list_streams("/ecs/app")
        .unwrap()
        .into_iter()
        .map(|x| x.name)
        .collect();
    assert_eq!(names, ["other", "web/1"]);
    // Retention hides nothing here (timestamps are ancient but retention applies relative to now):
    // read through a group without retention instead.
    s.update_group("/ecs/app", |g| {
        g.retention_in_days = None;
        Ok(())
    })
    .unwrap();
    let all = s
        .get_events("/ecs/app", "web/1", &q(ReadFrom::Head, 100))
        .unwrap();
    assert_eq!(msgs(&all), ["early", "one", "two"]);
    // Appends after restart go to a new segment and are ordered.
    put(&s, "/ecs/app", "web/1", &[(15, "mid".into())]);
    let all = s
        .get_events("/ecs/app", "web/1", &q(ReadFrom::Head, 100))
        .unwrap();
    assert_eq!(msgs(&all), ["early", "one", "mid", "two"]);
}

fn walk(p: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    if let Ok(rd) = fs::read_dir(p) {
        for e in rd.flatten() {
            let path = e.path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

#[test]
fn retention_deletes_whole_segments_and_hides_expired_events() {
    let (_d, s) = store();
    setup(&s);
    let now = now_ms();
    // Three segments on three different days.
    put(
        &s,
        "/ecs/app",
        "web/1",
        &[(now - 10 * DAY_MS, "old".into())],
    );
    put(&s, "/ecs/app", "web/1", &[(now - 4 * DAY_MS, "mid".into())]);
    put(&s, "/ecs/app", "web/1", &[(now - 1000, "new".into())]);
    let before = s.list_groups()[0].stored_bytes;
    s.update_group("/ecs/app", |g| {
        g.retention_in_days = Some(7);
        Ok(())
    })
    .unwrap();
    // Hidden immediately…
    let all = s
        .get_events("/ecs/app", "web/1", &q(ReadFrom::Head, 100))
        .unwrap();
    assert_eq!(msgs(&all), ["mid", "new"]);
    // …and reclaimed by the retention pass.
    let r = s.apply_retention(now).unwrap();
    assert_eq!(r.segments_deleted, 1);
    assert!(s.list_groups()[0].stored_bytes < before);
    assert_eq!(
        s.list_streams("/ecs/app").unwrap()[0].first_event_timestamp,
        Some(now - 4 * DAY_MS)
    );
    let segs = walk(s.dir())
        .into_iter()
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .count();
    assert_eq!(segs, 2);
    // Everything expires → the active segment goes too.
    let r = s.apply_retention(now + 30 * DAY_MS).unwrap();
    assert_eq!(r.segments_deleted, 2);
    let info = &s.list_streams("/ecs/app").unwrap()[0];
    assert_eq!(info.stored_bytes, 0);
    assert_eq!(info.first_event_timestamp, None);
    put(&s, "/ecs/app", "web/1", &[(now, "again".into())]);
    let all = s
        .get_events("/ecs/app", "web/1", &q(ReadFrom::Head, 100))
        .unwrap();
    assert_eq!(msgs(&all), ["again"]);
}

#[test]
fn filter_interleaves_streams_and_paginates() {
    let (_d, s) = store();
    setup(&s);
    s.create_stream("/ecs/app", "web/2").unwrap();
    s.create_stream("/ecs/app", "db/1").unwrap();
    for i in 0..50i64 {
        put(&s, "/ecs/app", "web/1", &[(i * 3, format!("ERROR w1 {i}"))]);
        put(
            &s,
            "/ecs/app",
            "web/2",
            &[(i * 3 + 1, format!("INFO w2 {i}"))],
        );
        put(
            &s,
            "/ecs/app",
            "db/1",
            &[(i * 3 + 2, format!("ERROR db {i}"))],
        );
    }
    let mut fq = FilterQuery {
        streams: None,
        prefix: Some("web/".into()),
        start: None,
        end: None,
        limit: 7,
        max_bytes: 1 << 20,
        pattern: Pattern::parse("").unwrap(),
        after: None,
        scan_budget: u64::MAX,
    };
    let mut all = vec![];
    loop {
        let r = s.filter_events("/ecs/app", &fq).unwrap();
        assert_eq!(r.searched_streams, ["web/1", "web/2"]);
        all.extend(r.events);
        match r.next {
            Some(c) => {
                let tok = c.to_token();
                fq.after = Some(FilterCursor::from_token(&tok).unwrap());
            }
            None => break,
        }
    }
    assert_eq!(all.len(), 100);
    assert!(all.windows(2).all(|w| w[0].1.timestamp < w[1].1.timestamp));
    assert_eq!(all[0].0, "web/1");
    assert_eq!(all[1].0, "web/2");
    // Pattern across all streams, exact stream list, time range.
    fq.prefix = None;
    fq.after = None;
    fq.limit = 10_000;
    fq.pattern = Pattern::parse("ERROR -db").unwrap();
    fq.start = Some(30);
    fq.end = Some(60);
    let r = s.filter_events("/ecs/app", &fq).unwrap();
    assert_eq!(r.events.len(), 10);
    assert!(r.events.iter().all(|(st, _)| st == "web/1"));
    assert!(r.next.is_none());
    fq.streams = Some(vec!["db/1".into(), "missing".into()]);
    fq.pattern = Pattern::parse("ERROR").unwrap();
    let r = s.filter_events("/ecs/app", &fq).unwrap();
    assert_eq!(r.searched_streams, ["db/1"]);
    assert_eq!(r.events.len(), 10);
    // A tiny scan budget still makes progress and eventually finishes.
    fq.streams = None;
    fq.start = None;
    fq.end = None;
    fq.scan_budget = 100;
    fq.pattern = Pattern::parse("db").unwrap();
    let mut n = 0;
    let mut pages = 0;
    loop {
        let r = s.filter_events("/ecs/app", &fq).unwrap();
        n += r.events.len();
        pages += 1;
        match r.next {
            Some(c) => fq.after = Some(c),
            None => break,
        }
        assert!(pages < 1000);
    }
    assert_eq!(n, 50);
}

#[test]
fn concurrent_writers_and_readers() {
    let (_d, s) = store();
    s.create_group(GroupSettings::new("g")).unwrap();
    for w in 0..8 {
        s.create_stream("g", &format!("s{w}")).unwrap();
    }
    let mut handles = vec![];
    for w in 0..8 {
        let s = s.clone();
        handles.push(std::thread::spawn(move || {
            for b in 0..50i64 {
                let evs: Vec<(i64, String)> = (0..20)
                    .map(|i| (b * 100 + i, format!("s{w} {b} {i}")))
                    .collect();
                put(&s, "g", &format!("s{w}"), &evs);
            }
        }));
    }
    for _ in 0..4 {
        let s = s.clone();
        handles.push(std::thread::spawn(move || {
            for _ in 0..50 {
                let fq = FilterQuery {
                    streams: None,
                    prefix: None,
                    start: None,
                    end: None,
                    limit: 10_000,
                    max_bytes: 1 << 22,
                    pattern: Pattern::All,
                    after: None,
                    scan_budget: u64::MAX,
                };
                let r = s.filter_events("g", &fq).unwrap();
                assert!(r
                    .events
                    .windows(2)
                    .all(|w| w[0].1.timestamp <= w[1].1.timestamp));
            }
        }));
    }
    for h in handles {
        h.join().unwrap();
    }
    for w in 0..8 {
        let all = s
            .get_events("g", &format!("s{w}"), &q(ReadFrom::Head, 100_000))
            .unwrap();
        assert_eq!(all.len(), 1000);
    }
}

#[test]
fn put_of_1000_small_events_is_fast() {
    let (_d, s) = store();
    setup(&s);
    let now = now_ms();
    let evs: Vec<(i64, String)> = (0..1000)
        .map(|i| (now + i, format!("GET /health 200 {i}ms")))
        .collect();
    let v: Vec<(i64, &str)> = evs.iter().map(|(t, m)| (*t, m.as_str())).collect();
    s.put_events("/ecs/app", "web/1", &v, now).unwrap(); // warm-up (segment creation)
    let t = std::time::Instant::now();
    for k in 1..=10 {
        let v: Vec<(i64, &str)> = evs
            .iter()
            .map(|(t, m)| (*t + k * 1000, m.as_str()))
            .collect();
        s.put_events("/ecs/app", "web/1", &v, now).unwrap();
    }
    let per_batch = t.elapsed() / 10;
    assert!(
        per_batch < Duration::from_millis(20),
        "1000-event batch took {per_batch:?}"
    );
}

#[test]
fn wipe_after_flush_and_retention() {
    let (_d, s) = store();
    setup(&s);
    put(&s, "/ecs/app", "web/1", &[(now_ms(), "x".into())]);
    s.flush().unwrap();
    s.apply_retention(now_ms()).unwrap();
    s.wipe().unwrap();
    assert!(s.list_groups().is_empty());
}

#[test]
fn live_subscribers_get_each_appended_batch_in_order() {
    let (_d, s) = store();
    s.create_group(GroupSettings::new("g")).unwrap();
    s.create_stream("g", "a").unwrap();
    s.create_stream("g", "b").unwrap();
    // Nobody listens: appends are not retained for later subscribers.
    put(&s, "g", "a", &[(1, "before".into())]);
    let mut rx = s.subscribe();
    put(&s, "g", "a", &[(2, "one".into()), (3, "two".into())]);
    put(&s, "g", "b", &[(4, "three".into())]);
    let first = rx.try_recv().unwrap();
    assert_eq!((first.group.as_str(), first.stream.as_str()), ("g", "a"));
    assert_eq!(
        first.events,
        vec![(2, "one".to_string()), (3, "two".to_string())]
    );
    let second = rx.try_recv().unwrap();
    assert_eq!(second.stream, "b");
    assert_eq!(second.events, vec![(4, "three".to_string())]);
    assert!(rx.try_recv().is_err());
    // A failed append publishes nothing.
    assert!(s.put_events("g", "missing", &[(5, "x")], now_ms()).is_err());
    assert!(rx.try_recv().is_err());
}
