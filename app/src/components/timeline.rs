//! The backup timeline drawn as SVG: rendered on the server (in UTC) and hydrated for zoom, pan, hover, the
//! time-zone toggle and clicks into the restore wizard.
//!
//! Layout is plain functions of milliseconds ([`visible_range`], [`x_of`], [`ticks`]) so it is tested without
//! a browser. The number of SVG elements follows the [`TimelineView`]'s runs, holes, switches and backups, never
//! the number of WAL segments (the view aggregates them).

use leptos::prelude::*;

use crate::api::timeline::{BackupView, TimelineView};

/// The drawing's width in SVG units (it scales to the page's width).
pub const WIDTH: f64 = 1000.0;
/// Where the time axis starts: room for the lane labels on the left.
pub const LEFT: f64 = 70.0;
/// Where it ends.
pub const RIGHT: f64 = 990.0;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;
const TOP: f64 = 22.0;
const LANE: f64 = 28.0;

/// The zoom buttons: a label and the span shown, `None` for everything.
pub const ZOOMS: [(&str, Option<i64>); 4] = [
    ("24 h", Some(DAY)),
    ("7 d", Some(7 * DAY)),
    ("30 d", Some(30 * DAY)),
    ("all", None),
];

/// The earliest and latest time the view holds anything at (WAL, a backup, a window), and "now".
pub fn data_extent(v: &TimelineView) -> (i64, i64) {
    let starts = v
        .runs
        .iter()
        .map(|r| r.from_ms)
        .chain(v.backups.iter().map(|b| b.start_ms.unwrap_or(b.finish_ms)))
        .chain(v.windows.iter().map(|w| w.from_ms));
    let ends = v
        .runs
        .iter()
        .map(|r| r.to_ms)
        .chain(v.backups.iter().map(|b| b.finish_ms))
        .chain(std::iter::once(v.now_ms));
    let end = ends.max().unwrap_or(v.now_ms);
    (starts.min().unwrap_or(end - DAY).min(end - HOUR), end)
}

/// The time range shown for a zoom (`None`: all of it, with a margin) and a pan of `pan` half-spans into the
/// past (0: ending now).
pub fn visible_range(v: &TimelineView, zoom: Option<i64>, pan: u32) -> (i64, i64) {
    let (first, last) = data_extent(v);
    match zoom {
        None => {
            let margin = ((last - first) / 50).max(60_000);
            (first - margin, last + margin)
        }
        Some(span) => {
            let end = last + span / 50 - i64::from(pan) * (span / 2);
            (end - span, end)
        }
    }
}

/// The x coordinate of time `ms` in `range`, clamped to the drawing.
pub fn x_of(ms: i64, range: (i64, i64)) -> f64 {
    let (a, b) = range;
    let span = (b - a).max(1) as f64;
    let x = LEFT + (ms - a) as f64 / span * (RIGHT - LEFT);
    x.clamp(LEFT, RIGHT)
}

/// The time at x coordinate `x` in `range` (the inverse of [`x_of`] inside the drawing).
pub fn ms_at(x: f64, range: (i64, i64)) -> i64 {
    let (a, b) = range;
    let f = ((x - LEFT) / (RIGHT - LEFT)).clamp(0.0, 1.0);
    a + (f * (b - a) as f64).round() as i64
}

/// Tick times for `range`: at most 8, on round multiples of a step from an hour to a year (UTC-aligned), with
/// the step.
pub fn ticks(range: (i64, i64)) -> (Vec<i64>, i64) {
    const STEPS: [i64; 13] = [
        HOUR,
        2 * HOUR,
        3 * HOUR,
        6 * HOUR,
        12 * HOUR,
        DAY,
        2 * DAY,
        7 * DAY,
        14 * DAY,
        30 * DAY,
        90 * DAY,
        180 * DAY,
        365 * DAY,
    ];
    let (a, b) = range;
    let span = (b - a).max(1);
    let step = STEPS
        .iter()
        .copied()
        .find(|s| span / s <= 8)
        .unwrap_or(365 * DAY);
    let first = a.div_euclid(step) * step + if a.rem_euclid(step) == 0 { 0 } else { step };
    let ticks = std::iter::successors(Some(first), |t| Some(t + step))
        .take_while(|t| *t <= b)
        .collect();
    (ticks, step)
}

/// Year, month and day of a count of days since 1970-01-01 (H. Hinnant's `civil_from_days`).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

fn parts(ms: i64, offset_min: i32) -> (i64, u32, u32, i64, i64, i64) {
    let local = ms + i64::from(offset_min) * 60_000;
    let (y, m, d) = civil(local.div_euclid(DAY));
    let in_day = local.rem_euclid(DAY) / 1000;
    (y, m, d, in_day / 3600, in_day / 60 % 60, in_day % 60)
}

/// `2026-11-29 14:02` at `offset_min` minutes east of UTC.
pub fn format_time(ms: i64, offset_min: i32) -> String {
    let (y, m, d, h, mi, _) = parts(ms, offset_min);
    format!("{y:04}-{m:02}-{d:02} {h:02}:{mi:02}")
}

/// `14:02` at `offset_min` minutes east of UTC.
pub fn format_clock(ms: i64, offset_min: i32) -> String {
    let (_, _, _, h, mi, _) = parts(ms, offset_min);
    format!("{h:02}:{mi:02}")
}

/// `2026-11-29T14:02:05Z`: a restore target.
pub fn rfc3339_utc(ms: i64) -> String {
    let (y, m, d, h, mi, s) = parts(ms, 0);
    format!("{y:04}-{m:02}-{d:02}T{h:02}:{mi:02}:{s:02}Z")
}

/// The restore wizard's address for a time.
pub fn restore_link(org: &str, app: &str, ms: i64) -> String {
    format!(
        "/clusters/{org}/{app}/restore?kind=time&target={}",
        rfc3339_utc(ms)
    )
}

/// Minutes east of UTC at `ms`: 0 in UTC mode and on the server, else the browser's zone (with its DST).
pub fn offset_at(ms: i64, utc: bool) -> i32 {
    if utc {
        return 0;
    }
    #[cfg(feature = "hydrate")]
    {
        let date = js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(ms as f64));
        -(date.get_timezone_offset() as i32)
    }
    #[cfg(not(feature = "hydrate"))]
    {
        let _ = ms;
        0
    }
}

/// The left edge and width of an element on the screen (`getBoundingClientRect`, called through JS so the app
/// needs no more web-sys features than leptos enables).
#[cfg(feature = "hydrate")]
fn client_box(el: &wasm_bindgen::JsValue) -> Option<(f64, f64)> {
    use wasm_bindgen::JsCast;
    let get = |v: &wasm_bindgen::JsValue, k: &str| js_sys::Reflect::get(v, &k.into()).ok();
    let f: js_sys::Function = get(el, "getBoundingClientRect")?.dyn_into().ok()?;
    let rect = f.call0(el).ok()?;
    Some((
        get(&rect, "left")?.as_f64()?,
        get(&rect, "width")?.as_f64()?,
    ))
}

/// On the server nothing is clicked.
#[cfg(not(feature = "hydrate"))]
fn client_box<T>(_: &T) -> Option<(f64, f64)> {
    None
}

/// A time for people: the viewer's zone (or UTC), with UTC beside it when they differ.
fn both(ms: i64, utc: bool) -> String {
    let off = offset_at(ms, utc);
    if off == 0 {
        format!("{} UTC", format_time(ms, 0))
    } else {
        format!("{} ({} UTC)", format_time(ms, off), format_time(ms, 0))
    }
}

/// `1.5 GiB`, or a dash when unknown.
pub fn human_bytes(b: Option<i64>) -> String {
    let Some(b) = b else {
        return "—".to_owned();
    };
    let mut v = b as f64;
    let mut unit = "B";
    for u in ["KiB", "MiB", "GiB", "TiB"] {
        if v < 1024.0 {
            break;
        }
        v /= 1024.0;
        unit = u;
    }
    if unit == "B" {
        format!("{b} B")
    } else {
        format!("{v:.1} {unit}")
    }
}

/// `1 h 05 min`, `12 min`, `40 s`.
pub fn human_duration(secs: i64) -> String {
    let s = secs.max(0);
    if s >= 3600 {
        format!("{} h {:02} min", s / 3600, s / 60 % 60)
    } else if s >= 60 {
        format!("{} min", s / 60)
    } else {
        format!("{s} s")
    }
}

fn lane_y(i: usize) -> f64 {
    TOP + LANE * (i as f64 + 2.0)
}

/// What a backup's marker says on hover.
fn backup_text(b: &BackupView, utc: bool) -> String {
    let kind = match (&b.delta_from, b.permanent) {
        (_, true) => "permanent backup".to_owned(),
        (Some(parent), _) => format!("delta backup of {parent}"),
        (None, _) => "full backup".to_owned(),
    };
    let state = if b.restorable {
        "restorable".to_owned()
    } else {
        format!("not restorable: {}", b.problems.join("; "))
    };
    format!(
        "{} — {kind}, timeline {}, finished {}, {} compressed; {state}",
        b.name,
        b.timeline,
        both(b.finish_ms, utc),
        human_bytes(b.compressed_bytes)
    )
}

/// The chart with its controls and the details line.
#[component]
pub fn TimelineChart(org: String, app: String, view: TimelineView) -> impl IntoView {
    let view = StoredValue::new(view);
    let zoom = RwSignal::new(3usize);
    let pan = RwSignal::new(0u32);
    // The server renders UTC; once hydrated, the browser switches to the viewer's zone.
    let utc = RwSignal::new(true);
    Effect::new(move |first: Option<()>| {
        if first.is_none() {
            utc.set(false);
        }
    });
    let details = RwSignal::new(String::from(
        "Point at the chart for details; click inside a shaded window to restore to that time.",
    ));
    let svg_ref = NodeRef::<leptos::svg::Svg>::new();
    let range = move || view.with_value(|v| visible_range(v, ZOOMS[zoom.get()].1, pan.get()));
    let org = StoredValue::new(org);
    let app = StoredValue::new(app);
    let on_window_click = move |ev: leptos::ev::MouseEvent| {
        let Some(svg) = svg_ref.get_untracked() else {
            return;
        };
        // The click's place in the drawing's units: the SVG scales to the page's width.
        let Some((left, width)) = client_box(&svg) else {
            return;
        };
        let x = (f64::from(ev.client_x()) - left) * WIDTH / width.max(1.0);
        let at = ms_at(x, range());
        let link = restore_link(&org.get_value(), &app.get_value(), at);
        let _ = window().location().set_href(&link);
    };
    let hover = move |text: String| move |_: leptos::ev::MouseEvent| details.set(text.clone());
    let chart = move || {
        let r = range();
        let utc = utc.get();
        view.with_value(|v| draw(v, r, utc, hover, on_window_click))
    };
    let lanes = view.with_value(|v| lanes_of(v).len());
    let height = lane_y(lanes) + 8.0;
    view! {
        <div class="timeline" data-test="timeline">
            <div class="timeline-controls">
                <span class="tl-zoom" role="group" aria-label="Zoom">
                    {ZOOMS.iter().enumerate().map(|(i, (label, _))| view! {
                        <button type="button" class="button button-secondary" data-test=format!("zoom-{}", label.replace(' ', ""))
                            class:active=move || zoom.get() == i
                            on:click=move |_| { zoom.set(i); pan.set(0); }>{*label}</button>
                    }).collect_view()}
                </span>
                <span class="tl-pan" role="group" aria-label="Pan">
                    <button type="button" class="button button-secondary" data-test="pan-back" title="Earlier"
                        disabled=move || ZOOMS[zoom.get()].1.is_none()
                        on:click=move |_| pan.update(|p| *p += 1)>"←"</button>
                    <button type="button" class="button button-secondary" data-test="pan-forward" title="Later"
                        disabled=move || pan.get() == 0
                        on:click=move |_| pan.update(|p| *p = p.saturating_sub(1))>"→"</button>
                </span>
                <label class="tl-utc">
                    <input type="checkbox" data-test="utc-toggle" checked=move || utc.get() prop:checked=move || utc.get()
                        on:change=move |ev| utc.set(event_target_checked(&ev)) />
                    " UTC"
                </label>
            </div>
            <svg node_ref=svg_ref class="timeline-chart" data-test="timeline-chart" role="img"
                aria-label="Backups, WAL coverage and restorable windows over time"
                viewBox=format!("0 0 {WIDTH} {height:.0}") preserveAspectRatio="none">
                {chart}
            </svg>
            <p class="tl-details mono" data-test="timeline-details" aria-live="polite">{move || details.get()}</p>
        </div>
    }
}

/// The Postgres timelines that get a lane, in order.
fn lanes_of(v: &TimelineView) -> Vec<u32> {
    let mut tlis: Vec<u32> = v
        .runs
        .iter()
        .map(|r| r.timeline)
        .chain(v.gaps.iter().map(|g| g.timeline))
        .chain(v.switches.iter().map(|s| s.timeline))
        .collect();
    tlis.sort_unstable();
    tlis.dedup();
    tlis
}

/// Everything inside the SVG for one range and zone.
fn draw<H>(
    v: &TimelineView,
    r: (i64, i64),
    utc: bool,
    hover: impl Fn(String) -> H + Copy + 'static,
    on_window_click: impl Fn(leptos::ev::MouseEvent) + Copy + 'static,
) -> AnyView
where
    H: Fn(leptos::ev::MouseEvent) + 'static,
{
    let lanes = lanes_of(v);
    let lane_of = |tli: u32| lanes.iter().position(|&t| t == tli).unwrap_or(0);
    let bottom = lane_y(lanes.len());
    let visible = |a: i64, b: i64| b >= r.0 && a <= r.1;
    let (tick_times, step) = ticks(r);
    let ticks_view = tick_times
        .into_iter()
        .map(|t| {
            let x = x_of(t, r);
            let off = offset_at(t, utc);
            let label = if step < DAY {
                format_time(t, off)[5..].to_owned()
            } else {
                format_time(t, off)[..10].to_owned()
            };
            view! {
                <g class="tl-tick" data-test="tick">
                    <line x1=x x2=x y1=TOP y2=bottom />
                    <text x=x y=TOP - 6.0 text-anchor="middle">{label}</text>
                </g>
            }
        })
        .collect_view();
    let windows = v
        .windows
        .iter()
        .filter(|w| visible(w.from_ms, w.to_ms))
        .map(|w| {
            let (x1, x2) = (x_of(w.from_ms, r), x_of(w.to_ms, r));
            let text = format!(
                "restorable on timeline {} from {} to {} — click to restore to a time",
                w.timeline,
                both(w.from_ms, utc),
                both(w.to_ms, utc)
            );
            let on_hover = hover(text.clone());
            view! {
                <g class="tl-window" data-test="window">
                    <rect class="tl-window-shade" x=x1 y=TOP width=(x2 - x1).max(1.0) height=bottom - TOP />
                    <rect class="tl-window-band" x=x1 y=TOP + 4.0 width=(x2 - x1).max(1.0) height=LANE - 8.0
                        on:mouseenter=on_hover on:click=on_window_click>
                        <title>{text}</title>
                    </rect>
                </g>
            }
        })
        .collect_view();
    let lane_labels = lanes
        .iter()
        .enumerate()
        .map(|(i, tli)| {
            let y = lane_y(i) + LANE / 2.0 + 4.0;
            view! { <text class="tl-lane-label" data-test="lane" x=4 y=y>{format!("timeline {tli}")}</text> }
        })
        .collect_view();
    let runs = v
        .runs
        .iter()
        .filter(|run| visible(run.from_ms, run.to_ms))
        .map(|run| {
            let (x1, x2) = (x_of(run.from_ms, r), x_of(run.to_ms, r));
            let y = lane_y(lane_of(run.timeline)) + 6.0;
            let text = format!(
                "WAL on timeline {}: {} segments, {} … {}, archived {} to {}{}",
                run.timeline,
                run.segments,
                run.first,
                run.last,
                both(run.from_ms, utc),
                both(run.to_ms, utc),
                if run.abandoned {
                    " (abandoned branch)"
                } else {
                    ""
                }
            );
            let on_hover = hover(text.clone());
            view! {
                <rect class="tl-run" class:abandoned=run.abandoned data-test="run" x=x1 y=y
                    width=(x2 - x1).max(2.0) height=LANE - 12.0 on:mouseenter=on_hover>
                    <title>{text}</title>
                </rect>
            }
        })
        .collect_view();
    let gaps = v
        .gaps
        .iter()
        .filter(|g| visible(g.after_ms.unwrap_or(r.0), g.before_ms.unwrap_or(r.1)))
        .map(|g| {
            let x1 = x_of(g.after_ms.unwrap_or(r.0), r);
            let x2 = x_of(g.before_ms.unwrap_or(r.1), r);
            let y = lane_y(lane_of(g.timeline)) + 2.0;
            let text = format!(
                "{}hole on timeline {}: {} segment(s) missing, {} … {}{}{}",
                if g.uploading { "still uploading, " } else { "" },
                g.timeline,
                g.missing,
                g.first_missing,
                g.last_missing,
                g.after_ms
                    .map(|t| format!(", after {}", both(t, utc)))
                    .unwrap_or_default(),
                g.before_ms
                    .map(|t| format!(", before {}", both(t, utc)))
                    .unwrap_or_default(),
            );
            let on_hover = hover(text.clone());
            view! {
                <rect class="tl-gap" class:uploading=g.uploading data-test="gap" x=x1 y=y
                    width=(x2 - x1).max(3.0) height=LANE - 4.0 on:mouseenter=on_hover>
                    <title>{text}</title>
                </rect>
            }
        })
        .collect_view();
    let switches = v
        .switches
        .iter()
        .filter_map(|s| Some((s, s.at_ms?)))
        .filter(|(_, at)| visible(*at, *at))
        .map(|(s, at)| {
            let x = x_of(at, r);
            let y1 = lane_y(lane_of(s.parent));
            let y2 = lane_y(lane_of(s.timeline)) + LANE;
            let text = format!(
                "timeline {} began from timeline {} at {} ({}){}",
                s.timeline,
                s.parent,
                s.switch_lsn,
                both(at, utc),
                if s.branch { "; the parent kept archiving: a branch" } else { "" }
            );
            let on_hover = hover(text.clone());
            view! {
                <g class="tl-switch" class:branch=s.branch data-test=if s.branch { "branch" } else { "switch" }
                    on:mouseenter=on_hover>
                    <title>{text}</title>
                    <line x1=x x2=x y1=y1.min(y2) y2=y1.max(y2) />
                    <path d=format!("M{x} {y} l-5 -8 h10 z", y = y1.min(y2)) />
                </g>
            }
        })
        .collect_view();
    let by_name = |name: &str| v.backups.iter().find(|b| b.name == name);
    let backup_y = TOP + LANE;
    let links = v
        .backups
        .iter()
        .filter_map(|b| Some((b, by_name(b.delta_from.as_deref()?)?)))
        .filter(|(b, p)| visible(p.finish_ms, b.finish_ms))
        .map(|(b, p)| {
            let (x1, x2) = (x_of(p.finish_ms, r), x_of(b.finish_ms, r));
            let y = backup_y + LANE / 2.0;
            view! {
                <path class="tl-delta-link" data-test="delta-link"
                    d=format!("M{x1} {y} Q{} {} {x2} {y}", (x1 + x2) / 2.0, y - 14.0) />
            }
        })
        .collect_view();
    let backups = v
        .backups
        .iter()
        .filter(|b| visible(b.start_ms.unwrap_or(b.finish_ms), b.finish_ms))
        .map(|b| {
            let x = x_of(b.finish_ms, r);
            let x0 = x_of(b.start_ms.unwrap_or(b.finish_ms), r);
            let y = backup_y + LANE / 2.0;
            let text = backup_text(b, utc);
            let (kind, shape) = match (&b.delta_from, b.permanent) {
                (_, true) => (
                    "permanent",
                    format!("M{x} {} l6 6 l-6 6 l-6 -6 z M{} {y} h12", y - 6.0, x - 6.0),
                ),
                (Some(_), _) => ("delta", format!("M{x} {} l5 5 l-5 5 l-5 -5 z", y - 5.0)),
                (None, _) => (
                    "full",
                    format!("M{} {y} a6 6 0 1 0 12 0 a6 6 0 1 0 -12 0", x - 6.0),
                ),
            };
            let on_hover = hover(text.clone());
            view! {
                <g class=format!("tl-backup {kind}") class:broken=!b.restorable data-test="backup"
                    data-kind=kind on:mouseenter=on_hover>
                    <title>{text}</title>
                    <line class="tl-backup-span" x1=x0 x2=x y1=y y2=y />
                    <path d=shape />
                </g>
            }
        })
        .collect_view();
    let marker = |class: &'static str, test: &'static str, at: i64, label: String| {
        let x = x_of(at, r);
        let on_hover = hover(label.clone());
        view! {
            <g class=class data-test=test on:mouseenter=on_hover>
                <title>{label}</title>
                <line x1=x x2=x y1=TOP y2=bottom />
            </g>
        }
    };
    let now = visible(v.now_ms, v.now_ms).then(|| {
        marker(
            "tl-now",
            "now",
            v.now_ms,
            format!("now: {}", both(v.now_ms, utc)),
        )
    });
    let latest = v.latest_restorable_ms.filter(|t| visible(*t, *t)).map(|t| {
        marker(
            "tl-latest",
            "latest",
            t,
            format!("latest restorable: {}", both(t, utc)),
        )
    });
    let empty = (v.runs.is_empty() && v.backups.is_empty()).then(|| {
        view! {
            <text class="tl-empty" data-test="timeline-empty" x=(LEFT + RIGHT) / 2.0 y=lane_y(0) + LANE
                text-anchor="middle">"No WAL and no base backups in this storage yet."</text>
        }
    });
    view! {
        {ticks_view}
        {windows}
        <text class="tl-lane-label" x=4 y=backup_y + LANE / 2.0 + 4.0>"backups"</text>
        {lane_labels}
        {runs}
        {gaps}
        {switches}
        {links}
        {backups}
        {now}
        {latest}
        {empty}
    }
    .into_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_and_formats() {
        assert_eq!(civil(0), (1970, 1, 1));
        assert_eq!(civil(-1), (1969, 12, 31));
        // 2026-11-29 14:02:05 UTC.
        let ms = 1_795_960_925_000;
        assert_eq!(format_time(ms, 0), "2026-11-29 14:02");
        assert_eq!(format_clock(ms, 60), "15:02");
        assert_eq!(format_time(ms, -15 * 60), "2026-11-28 23:02");
        assert_eq!(rfc3339_utc(ms), "2026-11-29T14:02:05Z");
        assert_eq!(
            restore_link("demo", "demo-db", ms),
            "/clusters/demo/demo-db/restore?kind=time&target=2026-11-29T14:02:05Z"
        );
        // A leap day.
        assert_eq!(format_time(1_709_164_800_000, 0), "2024-02-29 00:00");
    }

    #[test]
    fn x_maps_the_range_onto_the_drawing_and_back() {
        let r = (1_000, 11_000);
        assert_eq!(x_of(1_000, r), LEFT);
        assert_eq!(x_of(11_000, r), RIGHT);
        assert_eq!(x_of(6_000, r), (LEFT + RIGHT) / 2.0);
        // Outside the range: clamped to the edges.
        assert_eq!(x_of(-5_000, r), LEFT);
        assert_eq!(x_of(99_000, r), RIGHT);
        assert_eq!(ms_at(x_of(3_500, r), r), 3_500);
        // A range of zero length does not divide by zero.
        assert_eq!(x_of(5, (5, 5)), LEFT);
    }

    #[test]
    fn ticks_are_few_round_and_inside() {
        let (t, step) = ticks((DAY + 5 * 60_000, 2 * DAY));
        assert_eq!(step, 3 * HOUR);
        assert!(t.len() <= 8 && !t.is_empty());
        assert!(t
            .iter()
            .all(|x| x % step == 0 && *x >= DAY && *x <= 2 * DAY));
        let (t, step) = ticks((0, 365 * DAY));
        assert_eq!(step, 90 * DAY);
        assert_eq!(t.len(), 5);
    }

    #[test]
    fn zoom_and_pan_ranges() {
        let v = TimelineView {
            now_ms: 100 * DAY,
            ..TimelineView::default()
        };
        let (a, b) = visible_range(&v, Some(DAY), 0);
        assert_eq!(b - a, DAY);
        assert!(a < 100 * DAY && b >= 100 * DAY);
        let (a2, b2) = visible_range(&v, Some(DAY), 2);
        assert_eq!((a - a2, b - b2), (DAY, DAY));
        // "all" with nothing drawn: the last hour before now, with a margin.
        let (a, b) = visible_range(&v, None, 0);
        assert!(a < 100 * DAY - HOUR && b > 100 * DAY);
    }

    #[test]
    fn durations_and_sizes_for_people() {
        assert_eq!(human_duration(3_900), "1 h 05 min");
        assert_eq!(human_duration(720), "12 min");
        assert_eq!(human_duration(40), "40 s");
        assert_eq!(human_bytes(Some(1536)), "1.5 KiB");
        assert_eq!(human_bytes(None), "—");
    }
}
