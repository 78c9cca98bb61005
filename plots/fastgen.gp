# fastgen.gp — the FastGen memory figure, from the CSV of `kvsim confirm fastgen-memory`
# (docs/CONFIRM.md): (a) per layer, the raw KV cache against what fastgen's profiles
# keep (MB), with the saving; (b) the profile each (layer, KV head) chose.
#
#   gnuplot -e "csv='fastgen.csv'; out='fastgen.png'" plots/fastgen.gp
#
# Variables (set with -e):
#   csv      the fastgen-memory CSV                                         (required)
#   out      the figure: .png (pngcairo) or .svg                            (required)
#   source   live | replay: which run to draw                        (default live)
#   title    the title                (default: "FastGen: KV memory per layer (source)")
#   fmt, width, height, plotdir   see common.gp (this figure defaults to 1300 x 600)

if (!exists("common_loaded")) {
    _sl(s, i) = i < 1 ? 0 : s[i:i] eq '/' ? i : _sl(s, i - 1)
    if (!exists("plotdir")) { plotdir = _sl(ARG0, strlen(ARG0)) > 0 ? ARG0[1:_sl(ARG0, strlen(ARG0)) - 1] : '.' }
    load plotdir.'/common.gp'
}
if (!exists("csv")) { print "fastgen.gp: set csv='FILE.csv' with -e"; exit status 2 }
if (!exists("source")) { source = 'live' }
if (width == 1000 && height == 650) {
    width = 1300
    height = 600
    if (fmt eq 'svg') {
        set terminal svg size width, height dynamic noenhanced font 'Sans,12' background '#ffffff'
    } else {
        set terminal pngcairo size width, height noenhanced font 'Sans,10' background '#ffffff'
    }
    set output out
}
if (!exists("title")) { title = 'FastGen: KV memory per layer and the profile of each head ('.source.')' }

layer_row(v) = strcol("source") eq source && strcol("kv_head") eq 'all' && \
               strcol("layer") ne 'mean' ? v : NaN
head_row(v) = strcol("source") eq source && strcol("kv_head") ne 'all' ? v : NaN
mean_saving = NaN
heads = 0
stats csv using (mean_saving = strcol("source") eq source && strcol("layer") eq 'mean' ? \
                     column("saving_pct") : mean_saving, \
                 heads = head_row(1) == 1 && column("kv_head") + 1 > heads ? \
                     column("kv_head") + 1 : heads, 0) nooutput
profile_index(p) = p eq 'special' ? 0 : p eq 'punct' ? 1 : p eq 'frequent' ? 2 : \
                   p eq 'local' ? 3 : p eq 'full' ? 4 : NaN

set multiplot layout 1, 2 title title font ',14'

set title sprintf('(a) raw vs compressed KV per layer (mean saving %.1f%%)', mean_saving) font ',12'
set style fill solid 0.85 border -1
set boxwidth 0.4
set xlabel 'layer'
set ylabel 'KV cache (MB)'
set yrange [0:*]
set xrange [-1:*]
set key top right opaque
plot csv using (layer_row(column("layer")) - 0.2):(column("raw_mb")) with boxes \
        lc rgb '#9e9e9e' title 'raw', \
     '' using (layer_row(column("layer")) + 0.2):(column("compressed_mb")) with boxes \
        lc rgb policy_color('fastgen') title 'compressed'
set yrange [*:*]
set xrange [*:*]

set title '(b) profile chosen per (layer, KV head)' font ',12'
set xlabel 'layer'
set ylabel 'KV head'
set xrange [-0.5:*]
set yrange [-0.5:heads - 0.5]
set ytics 1
set cbrange [-0.5:4.5]
set palette maxcolors 5
set palette defined (0 '#4575b4', 1 '#91bfdb', 2 '#fee090', 3 '#fc8d59', 4 '#d73027')
set cbtics ('special' 0, 'punct' 1, 'frequent' 2, 'local' 3, 'full' 4)
set key off
plot csv using (head_row(column("layer"))):(column("kv_head")):(0.5):(0.5): \
        (profile_index(strcol("profile"))) with boxxyerror fc palette fs solid 1 noborder
unset multiplot
