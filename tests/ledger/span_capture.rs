//! A tracing layer that keeps what the ledger's spans and events say, and
//! how spans link (parent, follows-from), so a test can check that a
//! request's work can be traced from its call through the writer to the
//! store. Installed once per test binary as the global subscriber, for the
//! ledger's own targets at info and above.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Subscriber};
use tracing_subscriber::layer::{Context, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{EnvFilter, Layer};

/// A span as it was seen: its name, its fields (as last recorded) and the
/// spans it follows from. Keyed by a serial number, since the registry
/// reuses span ids once spans close.
#[derive(Debug, Clone, Default)]
pub struct SpanSeen {
    pub name: String,
    pub fields: HashMap<String, String>,
    pub follows: Vec<u64>,
}

/// An event: its fields (`message` among them) and the serials of the spans
/// it was in, innermost first.
#[derive(Debug, Clone, Default)]
pub struct EventSeen {
    pub fields: HashMap<String, String>,
    pub scope: Vec<u64>,
}

#[derive(Debug, Default)]
pub struct Seen {
    pub spans: HashMap<u64, SpanSeen>,
    pub events: Vec<EventSeen>,
    next: u64,
}

impl Seen {
    /// The span `serial`.
    pub fn span(&self, serial: u64) -> &SpanSeen {
        &self.spans[&serial]
    }

    /// Events whose field `name` is `value`.
    pub fn events_with<'a>(
        &'a self,
        name: &'a str,
        value: &'a str,
    ) -> impl Iterator<Item = &'a EventSeen> + 'a {
        self.events
            .iter()
            .filter(move |event| event.fields.get(name).is_some_and(|v| v == value))
    }

    /// Spans named `name` that follow from span `serial`.
    pub fn following(&self, serial: u64, name: &str) -> Vec<u64> {
        let mut found: Vec<u64> = self
            .spans
            .iter()
            .filter(|(_, span)| span.name == name && span.follows.contains(&serial))
            .map(|(serial, _)| *serial)
            .collect();
        found.sort_unstable();
        found
    }
}

/// The serial number a span was given, kept in its extensions.
struct Serial(u64);

struct Capture(Arc<Mutex<Seen>>);

#[derive(Default)]
struct Fields(HashMap<String, String>);

impl Visit for Fields {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl<S> Layer<S> for Capture
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(&self, attrs: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        attrs.record(&mut fields);
        let mut seen = self.0.lock().unwrap();
        seen.next += 1;
        let serial = seen.next;
        seen.spans.insert(
            serial,
            SpanSeen {
                name: attrs.metadata().name().to_owned(),
                fields: fields.0,
                follows: Vec::new(),
            },
        );
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(Serial(serial));
        }
    }

    fn on_record(&self, id: &Id, values: &Record<'_>, ctx: Context<'_, S>) {
        let Some(serial) = serial_of(id, &ctx) else {
            return;
        };
        let mut fields = Fields::default();
        values.record(&mut fields);
        if let Some(span) = self.0.lock().unwrap().spans.get_mut(&serial) {
            span.fields.extend(fields.0);
        }
    }

    fn on_follows_from(&self, id: &Id, follows: &Id, ctx: Context<'_, S>) {
        let (Some(serial), Some(cause)) = (serial_of(id, &ctx), serial_of(follows, &ctx)) else {
            return;
        };
        if let Some(span) = self.0.lock().unwrap().spans.get_mut(&serial) {
            span.follows.push(cause);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let mut fields = Fields::default();
        event.record(&mut fields);
        let scope = ctx
            .event_scope(event)
            .into_iter()
            .flatten()
            .filter_map(|span| span.extensions().get::<Serial>().map(|s| s.0))
            .collect();
        self.0.lock().unwrap().events.push(EventSeen {
            fields: fields.0,
            scope,
        });
    }
}

fn serial_of<S>(id: &Id, ctx: &Context<'_, S>) -> Option<u64>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    ctx.span(id)?.extensions().get::<Serial>().map(|s| s.0)
}

/// What the ledger's spans and events have said since this test binary's
/// first call; installs the capture as the global subscriber on that call.
pub fn seen() -> Arc<Mutex<Seen>> {
    static SEEN: OnceLock<Arc<Mutex<Seen>>> = OnceLock::new();
    SEEN.get_or_init(|| {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let subscriber = tracing_subscriber::registry()
            .with(Capture(seen.clone()).with_filter(EnvFilter::new("mfi_ledger=info")));
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other test sets the global subscriber");
        seen
    })
    .clone()
}
