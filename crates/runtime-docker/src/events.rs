//! A reconnecting Docker event stream.
//!
//! The stream subscribes to container events filtered by label. When the connection drops it
//! yields [`RuntimeEvent::Disconnected`], retries with exponential backoff (ping first), then
//! resubscribes with `since` = the last event seen (or the stream's start) so the gap is replayed,
//! skips events it already delivered, and yields [`RuntimeEvent::Reconnected`].

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime};

use berth_runtime::{
    ContainerEvent, ContainerId, EventKind, EventStream, LabelFilter, RuntimeEvent,
};
use bollard::models::{EventMessage, EventMessageTypeEnum};
use bollard::query_parameters::EventsOptions;
use bollard::Docker;
use futures::stream::BoxStream;
use futures::StreamExt;

use crate::convert::health_of_text;
use crate::DockerConfig;

type Inner = BoxStream<'static, Result<EventMessage, bollard::errors::Error>>;

struct State {
    docker: Docker,
    config: DockerConfig,
    filter: LabelFilter,
    inner: Option<Inner>,
    /// Nanoseconds since the epoch of the last delivered event (or stream start).
    last_nanos: i64,
    last_key: Option<(String, String)>,
    backoff: Duration,
    disconnected: bool,
    pending: VecDeque<RuntimeEvent>,
}

fn now_nanos() -> i64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl State {
    fn subscribe(&mut self) {
        let mut filters = HashMap::from([("type".to_string(), vec!["container".to_string()])]);
        let labels = self.filter.to_docker_filters();
        if !labels.is_empty() {
            filters.insert("label".to_string(), labels);
        }
        let since = format!(
            "{}.{:09}",
            self.last_nanos.div_euclid(1_000_000_000),
            self.last_nanos.rem_euclid(1_000_000_000)
        );
        let options = EventsOptions {
            since: Some(since),
            until: None,
            filters: Some(filters),
        };
        self.inner = Some(self.docker.events(Some(options)).boxed());
    }

    /// Whether this message was already delivered before a reconnect.
    fn is_replay(&self, nanos: i64, key: &(String, String)) -> bool {
        nanos < self.last_nanos || (nanos == self.last_nanos && self.last_key.as_ref() == Some(key))
    }
}

/// Maps a Docker event message to a container event (`None` for actions berth ignores).
pub(crate) fn map_event(m: EventMessage) -> Option<ContainerEvent> {
    if m.typ != Some(EventMessageTypeEnum::CONTAINER) {
        return None;
    }
    let action = m.action.unwrap_or_default();
    let actor = m.actor.unwrap_or_default();
    let mut attrs = actor.attributes.unwrap_or_default();
    let kind = match action.as_str() {
        "create" => EventKind::Create,
        "start" => EventKind::Start,
        "die" => EventKind::Die {
            exit_code: attrs.get("exitCode").and_then(|c| c.parse().ok()),
        },
        "oom" => EventKind::Oom,
        "stop" => EventKind::Stop,
        "kill" => EventKind::Kill {
            signal: attrs.get("signal").cloned(),
        },
        "destroy" => EventKind::Destroy,
        a if a.starts_with("health_status") => {
            EventKind::Health(health_of_text(a.split_once(':').map(|x| x.1).unwrap_or("")))
        }
        _ => return None,
    };
    let time = match m.time_nano {
        Some(n) => SystemTime::UNIX_EPOCH + Duration::from_nanos(u64::try_from(n).unwrap_or(0)),
        None => {
            SystemTime::UNIX_EPOCH
                + Duration::from_secs(u64::try_from(m.time.unwrap_or(0)).unwrap_or(0))
        }
    };
    let name = attrs.remove("name");
    let image = attrs.remove("image");
    for k in ["exitCode", "signal", "execID", "execDuration"] {
        attrs.remove(k);
    }
    Some(ContainerEvent {
        id: ContainerId::new(actor.id.unwrap_or_default()),
        name,
        image,
        labels: attrs.into_iter().collect(),
        kind,
        time,
    })
}

pub(crate) fn stream(docker: Docker, config: DockerConfig, filter: LabelFilter) -> EventStream {
    let backoff = config.event_backoff_min;
    let state = State {
        docker,
        config,
        filter,
        inner: None,
        last_nanos: now_nanos(),
        last_key: None,
        backoff,
        disconnected: false,
        pending: VecDeque::new(),
    };
    futures::stream::unfold(state, |mut st| async move {
        loop {
            if let Some(ev) = st.pending.pop_front() {
                return Some((ev, st));
            }
            if st.disconnected {
                tokio::time::sleep(st.backoff).await;
                st.backoff = (st.backoff * 2).min(st.config.event_backoff_max);
                let ping = tokio::time::timeout(st.config.request_timeout, st.docker.ping()).await;
                match ping {
                    Ok(Ok(_)) => {
                        st.disconnected = false;
                        st.backoff = st.config.event_backoff_min;
                        st.subscribe();
                        tracing::info!("docker event stream reconnected");
                        return Some((RuntimeEvent::Reconnected, st));
                    }
                    Ok(Err(e)) => tracing::debug!(error = %e, "docker still unreachable"),
                    Err(_) => tracing::debug!("docker ping timed out"),
                }
                continue;
            }
            if st.inner.is_none() {
                st.subscribe();
            }
            let next = match st.inner.as_mut() {
                Some(inner) => inner.next().await,
                None => None,
            };
            match next {
                Some(Ok(m)) => {
                    let nanos = m
                        .time_nano
                        .or_else(|| m.time.map(|t| t.saturating_mul(1_000_000_000)))
                        .unwrap_or(0);
                    let key = (
                        m.actor
                            .as_ref()
                            .and_then(|a| a.id.clone())
                            .unwrap_or_default(),
                        m.action.clone().unwrap_or_default(),
                    );
                    if st.is_replay(nanos, &key) {
                        continue;
                    }
                    st.last_nanos = nanos;
                    st.last_key = Some(key);
                    if let Some(ev) = map_event(m) {
                        if st.filter.matches(&ev.labels) {
                            return Some((RuntimeEvent::Container(ev), st));
                        }
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "docker event stream failed");
                    st.inner = None;
                    st.disconnected = true;
                    return Some((
                        RuntimeEvent::Disconnected {
                            error: e.to_string(),
                        },
                        st,
                    ));
                }
                None => {
                    tracing::warn!("docker event stream ended");
                    st.inner = None;
                    st.disconnected = true;
                    return Some((
                        RuntimeEvent::Disconnected {
                            error: "event stream closed by the engine".into(),
                        },
                        st,
                    ));
                }
            }
        }
    })
    .boxed()
}

#[cfg(test)]
mod tests {
    use super::*;
    use bollard::models::EventActor;

    #[test]
    fn maps_die_and_health() {
        let m = EventMessage {
            typ: Some(EventMessageTypeEnum::CONTAINER),
            action: Some("die".into()),
            actor: Some(EventActor {
                id: Some("abc".into()),
                attributes: Some(HashMap::from([
                    ("exitCode".to_string(), "3".to_string()),
                    ("name".to_string(), "web".to_string()),
                    ("berth.task".to_string(), "t1".to_string()),
                ])),
            }),
            time_nano: Some(1_000_000_000),
            ..Default::default()
        };
        let ev = map_event(m);
        let ev = ev.as_ref();
        assert_eq!(
            ev.map(|e| e.kind.clone()),
            Some(EventKind::Die { exit_code: Some(3) })
        );
        assert_eq!(ev.and_then(|e| e.name.clone()).as_deref(), Some("web"));
        assert_eq!(
            ev.and_then(|e| e.labels.get("berth.task").cloned())
                .as_deref(),
            Some("t1")
        );

        let m = EventMessage {
            typ: Some(EventMessageTypeEnum::CONTAINER),
            action: Some("health_status: unhealthy".into()),
            ..Default::default()
        };
        assert_eq!(
            map_event(m).map(|e| e.kind),
            Some(EventKind::Health(berth_runtime::HealthStatus::Unhealthy))
        );
        let m = EventMessage {
            typ: Some(EventMessageTypeEnum::CONTAINER),
            action: Some("exec_start: sh".into()),
            ..Default::default()
        };
        assert_eq!(map_event(m), None);
    }
}
