#if canImport(Glibc)
import Glibc
#endif

/// The round-trip percentiles of every latency case as an SVG: one row per
/// case, a logarithmic time axis, a bar from p50 to p99.9 with a mark for
/// each percentile and a tick at the maximum. SecureChannel cases are blue,
/// C baselines grey. Plain SVG 1.1, no scripts, readable on GitHub.
struct LatencyPlot {
    let results: BenchResults

    private let rowHeight = 16.0
    private let labelWidth = 430.0
    private let plotWidth = 560.0
    private let top = 58.0

    var svg: String {
        let rows = results.latency.compactMap { c in c.summary.map { (c, $0) } }
        let values = rows.flatMap { [$0.1.p50, $0.1.max] }.filter { $0 > 0 }
        let low = Self.decadeBelow(values.min() ?? 100)
        let high = Self.decadeAbove(values.max() ?? 1_000_000)
        let width = labelWidth + plotWidth + 30
        let height = top + Double(rows.count) * rowHeight + 40
        func x(_ ns: UInt64) -> Double {
            let v = Double(max(ns, 1))
            return labelWidth + plotWidth * (log10(v) - log10(Double(low))) / (log10(Double(high)) - log10(Double(low)))
        }
        var out: [String] = []
        out.append("<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"\(Int(width))\" height=\"\(Int(height))\" "
                   + "font-family=\"Helvetica, Arial, sans-serif\" font-size=\"11\">")
        out.append("<rect width=\"100%\" height=\"100%\" fill=\"white\"/>")
        let m = results.machine
        out.append(text(10, 18, "Round-trip latency per case (log scale): bar p50 to p99.9, marks at p50 ● p90 ◆ p99 ▲ p99.9 ■, tick at max",
                        size: 12, weight: "bold"))
        out.append(text(10, 34, "\(m.cpu), \(m.cores) cores, Linux \(m.kernel), Swift \(m.swift), libsodium \(m.libsodium), \(m.date)"))
        // Decade grid.
        var decade = low
        while decade <= high {
            let gx = x(decade)
            out.append("<line x1=\"\(f(gx))\" y1=\"\(f(top - 6))\" x2=\"\(f(gx))\" y2=\"\(f(top + Double(rows.count) * rowHeight))\" stroke=\"#ddd\"/>")
            out.append(text(gx - 14, top - 10, formatNanoseconds(decade)))
            decade *= 10
        }
        for (index, (c, s)) in rows.enumerated() {
            let y = top + Double(index) * rowHeight + rowHeight / 2
            let color = c.kind == .securechannel ? "#1f5fbf" : "#777"
            if index % 2 == 0 {
                out.append("<rect x=\"0\" y=\"\(f(y - rowHeight / 2))\" width=\"\(Int(width))\" height=\"\(f(rowHeight))\" fill=\"#f6f8fa\"/>")
            }
            out.append(text(10, y + 4, c.name, color: c.kind == .securechannel ? "#123" : "#555"))
            out.append("<line x1=\"\(f(x(s.p50)))\" y1=\"\(f(y))\" x2=\"\(f(x(s.p999)))\" y2=\"\(f(y))\" stroke=\"\(color)\" stroke-width=\"4\" stroke-opacity=\"0.35\"/>")
            out.append("<line x1=\"\(f(x(s.max)))\" y1=\"\(f(y - 5))\" x2=\"\(f(x(s.max)))\" y2=\"\(f(y + 5))\" stroke=\"\(color)\"/>")
            out.append("<circle cx=\"\(f(x(s.p50)))\" cy=\"\(f(y))\" r=\"3.5\" fill=\"\(color)\"/>")
            out.append(marker(x(s.p90), y, "diamond", color))
            out.append(marker(x(s.p99), y, "triangle", color))
            out.append(marker(x(s.p999), y, "square", color))
        }
        out.append("</svg>")
        return out.joined(separator: "\n") + "\n"
    }

    private func marker(_ cx: Double, _ cy: Double, _ shape: String, _ color: String) -> String {
        switch shape {
        case "diamond":
            return "<polygon points=\"\(f(cx)),\(f(cy - 4)) \(f(cx + 4)),\(f(cy)) \(f(cx)),\(f(cy + 4)) \(f(cx - 4)),\(f(cy))\" fill=\"\(color)\"/>"
        case "triangle":
            return "<polygon points=\"\(f(cx)),\(f(cy - 4)) \(f(cx + 4)),\(f(cy + 3)) \(f(cx - 4)),\(f(cy + 3))\" fill=\"\(color)\"/>"
        default:
            return "<rect x=\"\(f(cx - 3))\" y=\"\(f(cy - 3))\" width=\"6\" height=\"6\" fill=\"\(color)\"/>"
        }
    }

    private func text(_ x: Double, _ y: Double, _ content: String, size: Int = 11, weight: String = "normal",
                      color: String = "#222") -> String {
        "<text x=\"\(f(x))\" y=\"\(f(y))\" font-size=\"\(size)\" font-weight=\"\(weight)\" fill=\"\(color)\">\(Self.escape(content))</text>"
    }

    private func f(_ value: Double) -> String { fixed(value, 1) }

    static func escape(_ s: String) -> String {
        var out = ""
        for c in s {
            switch c {
            case "&": out += "&amp;"
            case "<": out += "&lt;"
            case ">": out += "&gt;"
            case "\"": out += "&quot;"
            default: out.append(c)
            }
        }
        return out
    }

    static func decadeBelow(_ ns: UInt64) -> UInt64 {
        var d: UInt64 = 1
        while d * 10 <= ns { d *= 10 }
        return d
    }

    static func decadeAbove(_ ns: UInt64) -> UInt64 {
        var d: UInt64 = 1
        while d < ns { d *= 10 }
        return d
    }
}
