import Foundation
import UpdateModels

/// The dashboard as one self-contained HTML page: inline CSS, SVG charts drawn here, forms for the
/// rollout buttons; no JavaScript, external stylesheets or fonts.
enum DashboardPage {
    static func escape(_ s: String) -> String {
        var out = ""
        out.reserveCapacity(s.utf8.count)
        for c in s.unicodeScalars {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            case "'": out += "&#39;"
            default: out.unicodeScalars.append(c)
            }
        }
        return out
    }

    static func bytes(_ n: UInt64) -> String {
        let d = Double(n)
        if d >= Double(1 << 30) { return String(format: "%.2f GiB", d / Double(1 << 30)) }
        if d >= Double(1 << 20) { return String(format: "%.2f MiB", d / Double(1 << 20)) }
        if d >= Double(1 << 10) { return String(format: "%.1f KiB", d / Double(1 << 10)) }
        return "\(n) B"
    }

    static func time(_ d: Date, withDate: Bool = true) -> String {
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = withDate ? "yyyy-MM-dd HH:mm 'UTC'" : "HH:mm"
        return f.string(from: d)
    }

    static func percent(_ x: Double) -> String { String(format: "%.1f%%", x * 100) }

    static let style = """
        body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f5f6f8;color:#1d2330}
        header{background:#1d2330;color:#fff;padding:14px 24px;display:flex;justify-content:space-between;align-items:center}
        header h1{font-size:20px;margin:0}main{padding:16px 24px;max-width:1200px}
        section{background:#fff;border:1px solid #dde1e7;border-radius:6px;padding:16px;margin-bottom:16px}
        h2{margin:0 0 12px;font-size:18px}h3{font-size:15px;margin:16px 0 8px}
        table{border-collapse:collapse;width:100%;font-size:14px}th,td{text-align:left;padding:6px 8px;border-bottom:1px solid #eceef2}
        th{color:#5b6475;font-weight:600}.num{text-align:right;font-variant-numeric:tabular-nums}
        .state{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600}
        .active{background:#e3f0ff;color:#0b4f9c}.paused{background:#fde2e1;color:#9b1c1c}.complete{background:#dff5e3;color:#17642b}
        .bar{background:#eceef2;border-radius:3px;height:8px;width:120px;display:inline-block;vertical-align:middle;margin-right:6px}
        .bar span{display:block;height:8px;border-radius:3px;background:#2f7de1}
        form{display:inline;margin:0}button{font-size:12px;padding:3px 8px;margin-right:4px;border:1px solid #b8bfcc;border-radius:4px;background:#fff;cursor:pointer}
        button.danger{border-color:#d9534f;color:#9b1c1c}.muted{color:#6b7384;font-size:13px}.reason{color:#9b1c1c;font-size:12px}
        .charts{display:flex;gap:16px;flex-wrap:wrap}
        """

    static func render(_ data: DashboardData, csrf: String?) -> String {
        var h = """
            <!DOCTYPE html>
            <html lang="en"><head><meta charset="utf-8"><title>Phoenix Update dashboard</title>
            <style>\(style)</style></head><body>
            <header><h1>Phoenix Update &#8212; releases</h1><span class="muted" style="color:#c9cfda">generated \(time(data.generated))
            &#183; window \(AutoPausePolicy.duration(data.windowSeconds))</span></header><main>

            """
        if data.platforms.isEmpty {
            h += "<section><h2>No releases yet</h2><p>Publish one with <code>phoenix-server publish</code>.</p></section>"
        }
        for p in data.platforms {
            h += platformSection(p, data: data, csrf: csrf)
        }
        h += logSection(data.log)
        h += "</main></body></html>\n"
        return h
    }

    static func platformSection(_ p: DashboardData.PlatformView, data: DashboardData, csrf: String?) -> String {
        let id = "platform-" + escape(p.platform)
        var h = "<section id=\"\(id)\"><h2>\(escape(p.platform))</h2>\n"
        h += """
            <table class="releases"><thead><tr><th>Version</th><th>Channel</th><th>Rollout</th><th>State</th>
            <th class="num">Installs</th><th class="num">Failures</th><th class="num">Failure rate</th><th>Actions</th></tr></thead><tbody>

            """
        for s in p.releases {
            let r = s.rollout
            let stageText = r.state == .complete ? "100%" : "\(r.percent)% (next \(r.nextStage)%)"
            var when = ""
            if let next = s.nextAdvance { when = "<div class=\"muted\">advances \(time(next))</div>" }
            if r.state == .paused, let reason = r.pausedReason { when = "<div class=\"reason\">\(escape(reason))</div>" }
            h += """
                <tr data-version="\(escape(s.version))"><td><strong>\(escape(s.version))</strong>\(s.critical ? " <span class=\"state paused\">critical</span>" : "")</td>
                <td>\(escape(s.channel))</td>
                <td><span class="bar"><span style="width:\(r.percent)%"></span></span>\(stageText)\(when)</td>
                <td><span class="state \(r.state.rawValue)">\(r.state.rawValue)</span></td>
                <td class="num">\(s.health.attempts)</td><td class="num">\(s.health.failureCount)</td>
                <td class="num">\(percent(s.health.failureRate))</td><td>\(buttons(platform: p.platform, status: s, csrf: csrf))</td></tr>

                """
        }
        h += "</tbody></table>\n<div class=\"charts\">\n"
        h += outcomeChart(p)
        h += bytesChart(p)
        h += "</div>\n"
        h += "<h3>Failures by category</h3>\n"
        if p.failures.isEmpty {
            h += "<p class=\"muted\">No failures reported in the window.</p>\n"
        } else {
            h += "<table class=\"failures\"><thead><tr><th>Stage: category</th><th class=\"num\">Reports</th></tr></thead><tbody>\n"
            for f in p.failures.prefix(12) {
                h += "<tr><td>\(escape(f.category))</td><td class=\"num\">\(f.count)</td></tr>\n"
            }
            h += "</tbody></table>\n"
        }
        if let e = data.experiment {
            h += "<h3>Experiment \(escape(e.name))</h3>\n"
            h += "<table class=\"variants\"><thead><tr><th>Variant</th><th>Check interval</th><th>Notification</th><th class=\"num\">Checks</th>"
            h += "<th class=\"num\">Installs</th><th class=\"num\">Failures</th></tr></thead><tbody>\n"
            for v in e.variants {
                let row = p.variants.first { $0.variant == e.name + "/" + v.name }
                h += "<tr><td>\(escape(v.name))</td><td>\(v.checkIntervalSeconds.map { AutoPausePolicy.duration($0) } ?? "client's")</td>"
                h += "<td>\(escape(v.notificationStyle ?? "default"))</td><td class=\"num\">\(row?.checks ?? 0)</td>"
                h += "<td class=\"num\">\(row?.installs ?? 0)</td><td class=\"num\">\(row?.failures ?? 0)</td></tr>\n"
            }
            h += "</tbody></table>\n"
        }
        return h + "</section>\n"
    }

    static func buttons(platform: String, status: RolloutStatus, csrf: String?) -> String {
        guard let csrf else { return "<span class=\"muted\">log in to change</span>" }
        func button(_ action: String, _ label: String, danger: Bool = false) -> String {
            """
            <form method="post" action="/dashboard/rollout"><input type="hidden" name="csrf" value="\(escape(csrf))">\
            <input type="hidden" name="platform" value="\(escape(platform))"><input type="hidden" name="version" value="\(escape(status.version))">\
            <button name="action" value="\(action)"\(danger ? " class=\"danger\"" : "")>\(label)</button></form>
            """
        }
        switch status.rollout.state {
        case .active: return button("advance", "Advance") + button("pause", "Pause", danger: true)
        case .paused: return button("resume", "Resume")
        case .complete: return button("pause", "Pause", danger: true)
        }
    }

    /// Stacked bars of install successes (green) and failures (red) per bucket, with the failure rate
    /// as a line on a 0-100% scale at the right.
    static func outcomeChart(_ p: DashboardData.PlatformView) -> String {
        let w = 560.0, hgt = 200.0, left = 40.0, right = 44.0, top = 16.0, bottom = 28.0
        let plotW = w - left - right, plotH = hgt - top - bottom
        let n = max(p.series.count, 1)
        let maxCount = max(1, p.series.map { $0.successes + $0.failures }.max() ?? 1)
        let slot = plotW / Double(n)
        var s = """
            <figure><svg class="chart outcomes" xmlns="http://www.w3.org/2000/svg" width="\(Int(w))" height="\(Int(hgt))" viewBox="0 0 \(Int(w)) \(Int(hgt))" role="img" aria-label="Install outcomes over time">
            <rect x="0" y="0" width="\(Int(w))" height="\(Int(hgt))" fill="#fff"/>
            <line x1="\(left)" y1="\(top + plotH)" x2="\(left + plotW)" y2="\(top + plotH)" stroke="#9aa3b2"/>
            <text x="\(left - 6)" y="\(top + 4)" font-size="10" text-anchor="end" fill="#5b6475">\(maxCount)</text>
            <text x="\(left - 6)" y="\(top + plotH)" font-size="10" text-anchor="end" fill="#5b6475">0</text>
            <text x="\(left + plotW + 6)" y="\(top + 4)" font-size="10" fill="#9b1c1c">100%</text>
            <text x="\(left + plotW + 6)" y="\(top + plotH)" font-size="10" fill="#9b1c1c">0%</text>

            """
        var line: [String] = []
        for (i, pt) in p.series.enumerated() {
            let x = left + Double(i) * slot + slot * 0.15
            let bw = max(1, slot * 0.7)
            let hs = plotH * Double(pt.successes) / Double(maxCount)
            let hf = plotH * Double(pt.failures) / Double(maxCount)
            if pt.successes > 0 {
                s += "<rect class=\"ok\" x=\(q(x)) y=\(q(top + plotH - hs)) width=\(q(bw)) height=\(q(hs)) fill=\"#3aa757\"><title>\(time(pt.start)): \(pt.successes) succeeded</title></rect>\n"
            }
            if pt.failures > 0 {
                s += "<rect class=\"fail\" x=\(q(x)) y=\(q(top + plotH - hs - hf)) width=\(q(bw)) height=\(q(hf)) fill=\"#d9534f\"><title>\(time(pt.start)): \(pt.failures) failed</title></rect>\n"
            }
            let total = pt.successes + pt.failures
            if total > 0 {
                let rate = min(1, Double(pt.failures) / Double(total))
                line.append("\(q(x + bw / 2, quoted: false)),\(q(top + plotH * (1 - rate), quoted: false))")
            }
            if i % max(1, n / 6) == 0 {
                s += "<text x=\(q(x)) y=\(q(top + plotH + 16)) font-size=\"10\" fill=\"#5b6475\">\(time(pt.start, withDate: false))</text>\n"
            }
        }
        if line.count > 1 {
            s += "<polyline class=\"rate\" points=\"\(line.joined(separator: " "))\" fill=\"none\" stroke=\"#9b1c1c\" stroke-width=\"1.5\"/>\n"
        }
        s += "</svg><figcaption class=\"muted\">Installs per \(AutoPausePolicy.duration(p.bucketSeconds)): succeeded (green), failed or rolled back (red); line: failure rate</figcaption></figure>\n"
        return s
    }

    /// Bytes clients downloaded for delta installs against what full downloads would have cost.
    static func bytesChart(_ p: DashboardData.PlatformView) -> String {
        let w = 420.0, barMax = 260.0
        let full = Double(max(p.fullEquivalentBytes, 1))
        let deltaW = barMax * Double(p.deltaBytes) / full
        let saved = p.fullEquivalentBytes == 0 ? 0 : Double(p.bytesSaved) / Double(p.fullEquivalentBytes)
        return """
            <figure><svg class="chart bytes" xmlns="http://www.w3.org/2000/svg" width="\(Int(w))" height="120" viewBox="0 0 \(Int(w)) 120" role="img" aria-label="Bytes saved by deltas">
            <rect x="0" y="0" width="\(Int(w))" height="120" fill="#fff"/>
            <text x="0" y="30" font-size="12" fill="#1d2330">as full</text>
            <rect x="70" y="18" width="\(q(p.fullEquivalentBytes == 0 ? 0 : barMax, quoted: false))" height="18" fill="#9aa3b2"/>
            <text x="\(q(70 + barMax + 6, quoted: false))" y="31" font-size="11" fill="#1d2330">\(bytes(p.fullEquivalentBytes))</text>
            <text x="0" y="66" font-size="12" fill="#1d2330">by delta</text>
            <rect x="70" y="54" width="\(q(deltaW, quoted: false))" height="18" fill="#2f7de1"/>
            <text x="\(q(70 + deltaW + 6, quoted: false))" y="67" font-size="11" fill="#1d2330">\(bytes(p.deltaBytes))</text>
            <text x="0" y="104" font-size="13" font-weight="600" fill="#17642b" class="saved">saved \(bytes(p.bytesSaved)) (\(percent(saved))) over \(p.deltaInstalls) delta installs</text>
            </svg><figcaption class="muted">Delta downloads against full downloads of the same releases; \(p.fullInstalls) full installs (\(bytes(p.fullBytes)))</figcaption></figure>

            """
    }

    static func q(_ x: Double, quoted: Bool = true) -> String {
        let v = String(format: "%.1f", x)
        return quoted ? "\"\(v)\"" : v
    }

    static func logSection(_ log: [RolloutLogEntry]) -> String {
        var h = "<section id=\"log\"><h2>Rollout log</h2>\n"
        if log.isEmpty { return h + "<p class=\"muted\">Nothing yet.</p></section>\n" }
        h += "<table><thead><tr><th>When</th><th>Release</th><th>Action</th><th>Now</th><th>Detail</th></tr></thead><tbody>\n"
        for e in log {
            h += "<tr><td>\(time(e.at))</td><td>\(escape(e.platform)) \(escape(e.version))</td><td>\(escape(e.action))</td>"
            h += "<td>\(e.percent)% \(escape(e.state))</td><td>\(escape(e.detail))</td></tr>\n"
        }
        return h + "</tbody></table></section>\n"
    }

    static func loginPage(message: String?) -> String {
        """
        <!DOCTYPE html>
        <html lang="en"><head><meta charset="utf-8"><title>Phoenix Update: log in</title><style>\(style)</style></head><body>
        <header><h1>Phoenix Update</h1></header><main><section style="max-width:420px">
        <h2>Log in</h2>\(message.map { "<p class=\"reason\">\(escape($0))</p>" } ?? "")
        <form method="post" action="/dashboard/login" style="display:block">
        <p><label>Admin token<br><input type="password" name="token" autocomplete="current-password" style="width:100%"></label></p>
        <p><button>Log in</button></p></form></section></main></body></html>

        """
    }
}
