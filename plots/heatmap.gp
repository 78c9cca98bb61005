# heatmap.gp — one head's attention matrix: query step t down, key position i across,
# probability p_t(i) on a log colour scale.  With a `kept` column, the entries a policy
# had evicted when query t attended are veiled in white, so what it kept stands out.
# Reads a heatmap CSV `t,key,prob[,kept]` (docs/PLOTS.md): one line per (t, key), any
# subset of cells (a causal triangle, a --range band); kept is 1 or 0.
#
#   gnuplot -e "csv='attn.csv'; out='attn.png'" plots/heatmap.gp
#
# Variables (set with -e):
#   csv      the heatmap CSV                                                (required)
#   out      the figure: .png (pngcairo) or .svg                            (required)
#   cbmin    the smallest probability coloured; below it is white     (default 1e-4)
#   policy   name of the policy whose kept set is overlaid      (default: "the policy")
#   title    the title                                (default "Attention, one head")
#   model    model name for the subtitle                                (default none)
#   trace    trace (and layer/head) for the subtitle    (default: the CSV's file name)
#   fmt, width, height, plotdir   see common.gp; plotdir is where common.gp lives

if (!exists("common_loaded")) {
    _sl(s, i) = i < 1 ? 0 : s[i:i] eq '/' ? i : _sl(s, i - 1)
    if (!exists("plotdir")) { plotdir = _sl(ARG0, strlen(ARG0)) > 0 ? ARG0[1:_sl(ARG0, strlen(ARG0)) - 1] : '.' }
    load plotdir.'/common.gp'
}
if (!exists("csv")) { print "heatmap.gp: set csv='FILE.csv' with -e"; exit status 2 }
if (!exists("cbmin")) { cbmin = 1e-4 }
if (!exists("policy")) { policy = 'the policy' }
if (!exists("trace")) { trace = basename(csv) }
if (!exists("width")) { width = 900 }

# The overlay is drawn only when the header names a `kept` column.
_header(i) = i > 16 ? '' : ' '.columnhead(i)._header(i + 1)
header = ''
stats csv every ::0::0 using (header = _header(1), 0) nooutput
overlay = strstrt(header.' ', ' kept ') > 0 ? 'kept' : ''

if (!exists("title")) { title = 'Attention, one head' }
eval title_block(title, subtitle(trace))
set xlabel 'key position i (token index)'
set ylabel 'query step t (token index)'
set cblabel 'attention probability p_t(i) (log scale)'
set logscale cb
set cbrange [cbmin:1]
set format cb '%.0e'
# Dark is little attention, bright is much: a perceptually ordered palette (viridis).
set palette defined (0 '#440154', 1 '#3b528b', 2 '#21918c', 3 '#5ec962', 4 '#fde725')
set autoscale fix
set yrange [*:*] reverse
set grid noxtics noytics
set key below center horizontal nobox noautotitle
# Leave room under the axis label for the overlay's legend line.
set bmargin 5.5
set xlabel offset 0, 0.3
set tics out

# Cells are unit boxes centred on (key, t): unlike `with image`, boxes need no full
# rectangle, so a causal triangle or a sparse range draws as it is.
plot csv using (column("key")):(column("t")):(0.51):(0.51):(column("prob")) \
        with boxxyerror fs solid noborder lc palette notitle, \
     for [k in overlay] csv \
        using (column(k) == 0 ? column("key") : NaN):(column("t")):(0.5):(0.5) \
        with boxxyerror fs transparent solid 0.7 noborder lc rgb '#ffffff' \
        title 'veiled: evicted by '.policy.' when query t attended'
