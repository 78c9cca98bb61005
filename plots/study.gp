# study.gp — the kvcompress study's figures in one canvas, from the CSV of
# `kvsim confirm study` (docs/CONFIRM.md): (a) perplexity per method as % of the full
# cache, one bar per (method, budget); (b) the perplexity / throughput trade-off;
# (c) the method × metric summary heatmap (% change against full); (d) cache
# efficiency, perplexity against peak KV megabytes.
#
#   gnuplot -e "csv='study.csv'; out='study.png'" plots/study.gp
#
# Variables (set with -e):
#   csv      the study CSV                                                  (required)
#   out      the figure: .png (pngcairo) or .svg                            (required)
#   title    the title                 (default: "kvcompress study: <text>")
#   model    model name for the subtitle                                (default none)
#   fmt, width, height, plotdir   see common.gp (this figure defaults to 1400 x 1000)

if (!exists("common_loaded")) {
    _sl(s, i) = i < 1 ? 0 : s[i:i] eq '/' ? i : _sl(s, i - 1)
    if (!exists("plotdir")) { plotdir = _sl(ARG0, strlen(ARG0)) > 0 ? ARG0[1:_sl(ARG0, strlen(ARG0)) - 1] : '.' }
    load plotdir.'/common.gp'
}
if (!exists("csv")) { print "study.gp: set csv='FILE.csv' with -e"; exit status 2 }

# Four panels need room: the common default canvas grows unless the user chose one.
if (width == 1000 && height == 650) {
    width = 1400
    height = 1000
    if (fmt eq 'svg') {
        set terminal svg size width, height dynamic noenhanced font 'Sans,12' background '#ffffff'
    } else {
        set terminal pngcairo size width, height noenhanced font 'Sans,10' background '#ffffff'
    }
    set output out
}

# A method's colour is that of the policy it runs on (common.gp's table).
method_color(m) = \
    m eq 'full' ? policy_color('full') : m eq 'L2' ? policy_color('knorm') : \
    m eq 'fix-size-L2' ? policy_color('scissorhands') : \
    m eq 'StreamingLLM' ? policy_color('streaming') : m eq 'H2O-L2' ? policy_color('h2o') : \
    m eq 'SnapKV-Lite' ? policy_color('snapkv') : m eq 'pyramid' ? policy_color('pyramidkv') : \
    m eq 'adaptive-L2' ? policy_color('adakv') : m eq 'recent-only' ? policy_color('recency') : \
    '#5f9ea0'
rgb(c) = int('0x'.c[2:7])
row_label(x) = strcol("method").(strcol("budget") eq '' ? '' : ' '.strcol("budget"))

# One pass: the text, the methods (legend order), rows, the full cache's perplexity.
text = ''
methods = ''
rows = 0
full_ppl = NaN
stats csv using (text = text eq '' ? strcol("text") : text, \
                 methods = add_unique(methods, strcol("method")), rows = rows + 1, \
                 full_ppl = strcol("method") eq 'full' ? column("ppl") : full_ppl, 0) nooutput
if (!exists("title")) { title = 'kvcompress study: '.text }

set multiplot layout 2, 2 title title font ',15'
set key off
set grid ytics

# (a) perplexity as % of full, a bar per (method, budget)
set title '(a) perplexity, % of the full cache' font ',12'
set style fill solid 0.8 border -1
set boxwidth 0.8
set xtics rotate by 45 right font ',8'
set ylabel 'perplexity (% of full)'
set yrange [0:*]
plot csv using 0:(column("ppl_pct")):(rgb(method_color(strcol("method")))):xtic(row_label(0)) \
        with boxes lc rgb variable, \
     100 with lines dt 2 lc rgb '#000000'
set yrange [*:*]
set xtics norotate font ''

# (b) the trade-off: perplexity against throughput
set title '(b) perplexity vs throughput (teacher-forced tokens/s)' font ',12'
set xlabel 'tokens/s'
set ylabel 'perplexity'
set key outside right top vertical Left reverse font ',9'
plot for [m in methods] csv \
        using (strcol("method") eq m ? column("tokens_per_s") : NaN):(column("ppl")) \
        with points pt 7 ps 1.6 lc rgb method_color(m) title m, \
     for [m in methods] csv \
        using (strcol("method") eq m ? column("tokens_per_s") : NaN):(column("ppl")): \
              (strcol("budget")) with labels offset 0, 1 font ',8' notitle
set key off

# (c) summary heatmap: each metric's % change against full, per (method, budget)
set title '(c) % change vs full (red: worse for perplexity, TTFT, TPOT, bytes)' font ',12'
metrics = 'ppl_pct accuracy_pct ttft_pct tpot_pct tokens_per_s_pct kv_bytes_pct'
set xlabel ''
set ylabel ''
set xrange [0.5:6.5]
set yrange [rows - 0.5:-0.5]
set xtics ('ppl' 1, 'accuracy' 2, 'TTFT' 3, 'TPOT' 4, 'tokens/s' 5, 'KV bytes' 6)
set ytics font ',8'
set cbrange [-60:60]
set palette defined (-60 '#2166ac', 0 '#f7f7f7', 60 '#b2182b')
set colorbox
set grid noytics
plot for [c = 1:6] csv using (c):0:(0.5):(0.5):(column(word(metrics, c)) - 100): \
        ytic(row_label(0)) with boxxyerror fc palette fs solid 1 noborder, \
     for [c = 1:6] csv using (c):0:(sprintf('%+.0f', column(word(metrics, c)) - 100)) \
        with labels font ',7'
unset colorbox
set xrange [*:*]
set yrange [*:*]
set xtics autofreq
set ytics autofreq font ''
set grid ytics

# (d) cache efficiency: perplexity against peak KV megabytes
set title '(d) cache efficiency: perplexity vs peak KV MB' font ',12'
set xlabel 'peak KV cache (MB, allocator count)'
set ylabel 'perplexity'
plot for [m in methods] csv \
        using (strcol("method") eq m ? column("kv_bytes") / 1e6 : NaN):(column("ppl")) \
        with points pt 7 ps 1.6 lc rgb method_color(m) title m, \
     for [m in methods] csv \
        using (strcol("method") eq m ? column("kv_bytes") / 1e6 : NaN):(column("ppl")): \
              (strcol("budget")) with labels offset 0, 1 font ',8' notitle, \
     (full_ppl == full_ppl ? full_ppl : 1/0) with lines dt 2 lc rgb '#000000' notitle
unset multiplot
