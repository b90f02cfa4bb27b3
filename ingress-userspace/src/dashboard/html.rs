//! The dashboard as one HTML page. Every string that comes from an object (hosts, paths,
//! names, diagnostic messages, pod names) goes through [`escape`]. The inline script refetches
//! the page every [`REFRESH_SECS`], swaps its `<main>` in and computes request and error
//! rates over the interval from the totals the rows carry (`data-requests`, `data-errors`).

use std::fmt::Write;

use super::{BackendView, Dashboard, EndpointView};

/// Seconds between refreshes.
pub const REFRESH_SECS: u32 = 5;

/// `s` safe as HTML text and as a quoted attribute value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const STYLE: &str = "body{font:14px/1.4 system-ui,sans-serif;margin:0;background:#f6f7f9;color:#1b1f24}\
header{background:#1f3a5f;color:#fff;padding:10px 16px;display:flex;gap:16px;align-items:baseline}\
h1{font-size:18px;margin:0}h2{font-size:16px;margin:18px 0 6px}main{padding:0 16px 16px}\
table{border-collapse:collapse;background:#fff;width:100%}th,td{border:1px solid #d0d7de;padding:3px 6px;text-align:left;vertical-align:top}\
th{background:#e9eef5}td.n{text-align:right;font-variant-numeric:tabular-nums}ul{margin:0;padding-left:16px}\
.healthy,.active{color:#116329}.ejected,.Error{color:#b3261e;font-weight:600}.failing,.terminating,.Warning{color:#9a6700}\
.unknown{color:#57606a}.summary span{margin-right:18px}";

const SCRIPT: &str = r#"(function(){
var prev={},prevAt=0,n=0;
function sample(){var c={};document.querySelectorAll('tr[data-route]').forEach(function(tr){c[tr.dataset.route]={r:+tr.dataset.requests,e:+tr.dataset.errors};});return c;}
function rates(){var at=Date.now(),cur=sample(),dt=(at-prevAt)/1000;
if(prevAt&&dt>0){document.querySelectorAll('tr[data-route]').forEach(function(tr){var p=prev[tr.dataset.route],c=cur[tr.dataset.route];if(!p)return;
tr.querySelector('.rate').textContent=Math.max(0,(c.r-p.r)/dt).toFixed(2);tr.querySelector('.err-rate').textContent=Math.max(0,(c.e-p.e)/dt).toFixed(2);});}
prev=cur;prevAt=at;}
function say(t){document.getElementById('refresh').textContent=t;}
function refresh(){fetch('/dashboard',{cache:'no-store'}).then(function(r){if(!r.ok)throw new Error('HTTP '+r.status);return r.text();}).then(function(t){
var m=new DOMParser().parseFromString(t,'text/html').getElementById('dashboard');if(!m)throw new Error('no dashboard in the answer');
document.getElementById('dashboard').replaceWith(document.adoptNode(m));rates();n++;document.body.setAttribute('data-refreshed',String(n));
say('updated '+new Date().toLocaleTimeString());}).catch(function(e){say('refresh failed: '+e.message);}).then(function(){setTimeout(refresh,REFRESH_MS);});}
rates();setTimeout(refresh,REFRESH_MS);
})();"#;

/// The whole page.
pub fn render(d: &Dashboard) -> String {
    let mut h = String::with_capacity(16 * 1024);
    let _ = write!(
        h,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>xdp-ingress dashboard</title><style>{STYLE}</style></head>\
         <body data-refreshed=\"0\"><header><h1>xdp-ingress</h1>\
         <span id=\"refresh\">refreshes every {REFRESH_SECS} s</span>\
         <a style=\"color:#cde\" href=\"/dashboard.json\">JSON</a>\
         <a style=\"color:#cde\" href=\"/metrics\">metrics</a></header><main id=\"dashboard\">"
    );
    summary(&mut h, d);
    routes(&mut h, d);
    l4(&mut h, d);
    diagnostics(&mut h, d);
    let script = SCRIPT.replace("REFRESH_MS", &(REFRESH_SECS * 1000).to_string());
    let _ = write!(h, "</main><script>{script}</script></body></html>");
    h
}

fn ms(v: Option<f64>) -> String {
    match v {
        Some(v) if v.is_finite() => format!("{v:.1} ms"),
        Some(_) => "&gt; 16 s".into(),
        None => "–".into(),
    }
}

fn summary(h: &mut String, d: &Dashboard) {
    let c = &d.control;
    let _ = write!(
        h,
        "<section class=\"summary\" id=\"summary\"><h2>Control plane</h2>\
         <span>snapshot version <b id=\"version\">{}</b></span>\
         <span>served by the proxy <b>{}</b></span><span>snapshots {}</span><span>events {}</span>\
         <span>apply errors {}</span><span>event-to-live p50 {} · p99 {}</span></section>",
        d.version,
        d.served_version,
        c.snapshots,
        c.events,
        c.apply_errors,
        ms(c.event_to_live_p50_ms),
        ms(c.event_to_live_p99_ms),
    );
}

fn routes(h: &mut String, d: &Dashboard) {
    h.push_str(
        "<section id=\"routes\"><h2>Hosts and routes</h2><table><thead><tr><th>Host</th>\
         <th>Match</th><th>Ingress</th><th>Action</th><th>Requests</th><th>5xx</th>\
         <th>req/s</th><th>5xx/s</th><th>p99 ≤</th><th>Backends and endpoints</th></tr>\
         </thead><tbody>",
    );
    if d.hosts.is_empty() {
        h.push_str("<tr><td colspan=\"10\">no routes</td></tr>");
    }
    for host in &d.hosts {
        for r in &host.routes {
            let key = format!("{}|{}|{}", host.host, r.ingress, r.path_label);
            let _ = write!(
                h,
                "<tr data-route=\"{}\" data-requests=\"{}\" data-errors=\"{}\"><td class=\"host\">{}{}</td>\
                 <td>{}</td><td>{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
                 <td class=\"n rate\">–</td><td class=\"n err-rate\">–</td><td class=\"n\">{}</td><td>",
                escape(&key),
                r.requests,
                r.errors,
                escape(&host.host),
                if host.tls { " 🔒" } else { "" },
                escape(&r.matches),
                escape(&r.ingress),
                escape(&r.action),
                r.requests,
                r.errors,
                ms(r.p99_ms),
            );
            backends(h, &r.backends);
            h.push_str("</td></tr>");
        }
    }
    h.push_str("</tbody></table></section>");
}

fn backends(h: &mut String, bs: &[BackendView]) {
    if bs.is_empty() {
        return;
    }
    h.push_str("<ul>");
    for b in bs {
        let _ = write!(
            h,
            "<li><span class=\"upstream\">{}</span> weight {}{}",
            escape(&b.upstream),
            b.weight,
            if b.service_upstream {
                " (service-upstream)"
            } else {
                ""
            }
        );
        if b.endpoints.is_empty() {
            h.push_str(" <span class=\"ejected\">no endpoints</span>");
        } else {
            h.push_str("<ul>");
            for e in &b.endpoints {
                endpoint(h, e);
            }
            h.push_str("</ul>");
        }
        h.push_str("</li>");
    }
    h.push_str("</ul>");
}

fn endpoint(h: &mut String, e: &EndpointView) {
    let _ = write!(
        h,
        "<li class=\"endpoint\">{} <span class=\"{}\">{}</span> <span class=\"{}\">{}</span>",
        escape(&e.address.to_string()),
        e.state,
        e.state,
        e.health,
        e.health,
    );
    if let Some(pod) = &e.pod {
        let _ = write!(h, " {}", escape(pod));
    }
    if let Some(x) = &e.detail {
        let _ = write!(
            h,
            " <small>failures {} · in flight {}{}</small>",
            x.consecutive_failures,
            x.in_flight,
            if x.latency_us > 0 {
                format!(" · {:.1} ms", x.latency_us as f64 / 1000.0)
            } else {
                String::new()
            }
        );
    }
    h.push_str("</li>");
}

fn l4(h: &mut String, d: &Dashboard) {
    h.push_str("<section id=\"l4\"><h2>L4 services (XDP)</h2>");
    if let Some(e) = &d.l4_error {
        let _ = write!(
            h,
            "<p class=\"Error\">counters unavailable: {}</p>",
            escape(e)
        );
    }
    let Some(services) = &d.l4 else {
        if d.l4_error.is_none() {
            h.push_str("<p>XDP is off (--no-xdp).</p>");
        }
        h.push_str("</section>");
        return;
    };
    h.push_str(
        "<table><thead><tr><th>Service</th><th>Frontends</th><th>Packets</th><th>Bytes</th>\
         <th>New flows</th><th>SYN-limited</th><th>Backends</th></tr></thead><tbody>",
    );
    if services.is_empty() {
        h.push_str("<tr><td colspan=\"7\">no L4 services</td></tr>");
    }
    for s in services {
        let c = &s.counters;
        let _ = write!(
            h,
            "<tr><td>{}{}</td><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td>\
             <td class=\"n\">{}</td><td class=\"n\">{}</td><td><ul>",
            escape(&s.name),
            s.no_backend
                .map(|why| format!(" <span class=\"Error\">{}</span>", escape(why)))
                .unwrap_or_default(),
            escape(&s.frontends.join(", ")),
            c.packets,
            c.bytes,
            c.new_flows,
            c.syn_limited,
        );
        for b in &s.backends {
            let _ = write!(
                h,
                "<li>{} <span class=\"{}\">{}</span>{} · {} packets · {} new flows</li>",
                escape(&b.address.to_string()),
                escape(b.state),
                escape(b.state),
                if b.remote { " (remote)" } else { "" },
                b.counters.packets,
                b.counters.new_flows,
            );
        }
        h.push_str("</ul></td></tr>");
    }
    h.push_str("</tbody></table></section>");
}

fn diagnostics(h: &mut String, d: &Dashboard) {
    let _ = write!(
        h,
        "<section id=\"diagnostics\"><h2>Diagnostics ({})</h2>",
        d.diagnostics.len()
    );
    if d.diagnostics.is_empty() {
        h.push_str("<p>none</p></section>");
        return;
    }
    h.push_str(
        "<table><thead><tr><th>Severity</th><th>Object</th><th>Reason</th><th>Message</th>\
         </tr></thead><tbody>",
    );
    for x in &d.diagnostics {
        let _ = write!(
            h,
            "<tr class=\"diagnostic\"><td class=\"{}\">{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&x.severity),
            escape(&x.severity),
            escape(&x.object),
            escape(&x.reason),
            escape(&x.message),
        );
    }
    h.push_str("</tbody></table></section>");
}
