# common.gp — what every kvsim figure shares: the output terminal, the one colour and
# point type per policy, metric labels, and the title block.  Loaded by std.gp,
# sweep.gp, scope.gp, heatmap.gp, confirm.gp, study.gp, fastgen.gp and passkey.gp
# (kvsim inlines it into the scripts it prints).
#
# Variables it reads (set them with -e before the figure script):
#   out    output file; .png gives pngcairo, .svg gives svg                (required)
#   fmt    'png' or 'svg', overriding the extension of out                 (optional)
#   width, height   canvas size in pixels                       (default 1000 x 650)
#
# The policy table below is the only place a policy's colour is chosen: a policy looks
# the same in every figure.  full and oracle are the references (black, grey).

common_loaded = 1

# --- strings ---------------------------------------------------------------------
# gnuplot has no strrchr: walk back from the end to the last '/'.
_last_slash(s, i) = i < 1 ? 0 : s[i:i] eq '/' ? i : _last_slash(s, i - 1)
dirname(s)  = _last_slash(s, strlen(s)) > 1 ? s[1:_last_slash(s, strlen(s)) - 1] : \
              _last_slash(s, strlen(s)) == 1 ? '/' : '.'
basename(s) = s[_last_slash(s, strlen(s)) + 1:*]
ends_with(s, suffix) = strlen(s) >= strlen(suffix) && \
                       s[strlen(s) - strlen(suffix) + 1:*] eq suffix

# Append word w to the space-separated list l unless it is already there; used with
# `stats` to collect the distinct values of a column in order of first appearance.
# Double the single quotes of s so that it survives inside '...' in an eval'd command.
quote(s) = strstrt(s, "'") == 0 ? s : \
    s[1:strstrt(s, "'")] . "'" . quote(s[strstrt(s, "'") + 1:*])

add_unique(l, w) = strstrt(' '.l.' ', ' '.w.' ') > 0 ? l : (l eq '' ? w : l.' '.w)

# --- terminal --------------------------------------------------------------------
if (!exists("out")) { print "set out='FILE.png' (or .svg) with -e"; exit status 2 }
if (!exists("fmt")) { fmt = ends_with(out, '.svg') || ends_with(out, '.SVG') ? 'svg' : 'png' }
if (!exists("width"))  { width = 1000 }
if (!exists("height")) { height = 650 }
if (fmt eq 'svg') {
    set terminal svg size width, height dynamic noenhanced font 'Sans,13' background '#ffffff'
} else {
    set terminal pngcairo size width, height noenhanced font 'Sans,11' background '#ffffff'
}
set output out
set datafile separator ','
set datafile columnheaders
# Filtered rows are NaN; as 'missing' they are skipped without breaking a line.
set datafile missing NaN
set encoding utf8

# --- one colour and one point type per policy ------------------------------------
policy_color(p) = \
    p eq 'full'         ? '#000000' : \
    p eq 'oracle'       ? '#8c8c8c' : \
    p eq 'h2o'          ? '#1f77b4' : \
    p eq 'mas'          ? '#ff7f0e' : \
    p eq 'roco'         ? '#d62728' : \
    p eq 'tova'         ? '#2ca02c' : \
    p eq 'streaming'    ? '#9467bd' : \
    p eq 'snapkv'       ? '#8c564b' : \
    p eq 'pyramidkv'    ? '#e377c2' : \
    p eq 'knorm'        ? '#17becf' : \
    p eq 'scissorhands' ? '#bcbd22' : \
    p eq 'random'       ? '#e6ab02' : \
    p eq 'recency'      ? '#393b79' : \
    p eq 'fastgen'      ? '#00a087' : \
    p eq 'adakv'        ? '#8b0a50' : \
                          '#5f9ea0'
# Shapes as well as colours, so a greyscale print or a colour-blind reader can tell
# the lines apart: 4 = open square, 6 = open circle, 8 = open triangle, ...
policy_pt(p) = \
    p eq 'full' ? 0 : p eq 'oracle' ? 0 : p eq 'h2o' ? 4 : p eq 'mas' ? 6 : \
    p eq 'roco' ? 7 : p eq 'tova' ? 8 : p eq 'streaming' ? 10 : p eq 'snapkv' ? 12 : \
    p eq 'pyramidkv' ? 14 : p eq 'knorm' ? 5 : p eq 'scissorhands' ? 9 : \
    p eq 'random' ? 1 : p eq 'recency' ? 2 : p eq 'fastgen' ? 11 : p eq 'adakv' ? 13 : 3
is_reference(p) = p eq 'full' || p eq 'oracle'

# A score is drawn in the colour of the preset that made it known.
score_color(s) = \
    s eq 'aas'  ? policy_color('h2o') : s eq 'mas'  ? policy_color('mas') : \
    s eq 'ltas' ? policy_color('tova') : s eq 'aqas' ? policy_color('scissorhands') : \
    policy_color(s)

# --- metrics: CLI name -> column, axis label --------------------------------------
metric_column(m) = m eq 'output-error' ? 'output_error' : \
                   m eq 'oracle-gap'   ? 'oracle_gap'   : m
metric_label(m) = \
    m eq 'mass'         ? 'attention mass kept, mean m_t (fraction of 1)' : \
    m eq 'overlap'      ? 'top-B overlap with the full cache (fraction)' : \
    m eq 'consistency'  ? 'score consistency with the full cache (fraction)' : \
    m eq 'output-error' || m eq 'output_error' ? \
                          'single-layer output error ‖o_pol − o_full‖ / ‖o_full‖' : \
    m eq 'oracle-gap'   || m eq 'oracle_gap' ? \
                          'oracle gap: oracle mass − policy mass (fraction)' : m
is_fraction(m) = m eq 'mass' || m eq 'overlap' || m eq 'consistency'
metric_name(m) = \
    m eq 'mass' ? 'Attention mass kept' : m eq 'overlap' ? 'Top-B overlap' : \
    m eq 'consistency' ? 'Score consistency' : \
    m eq 'output-error' || m eq 'output_error' ? 'Output error' : \
    m eq 'oracle-gap' || m eq 'oracle_gap' ? 'Oracle gap' : m

# --- title block -----------------------------------------------------------------
# The subtitle names the model and the trace, so a figure that leaves its folder still
# says where it came from.
if (!exists("model")) { model = '' }
subtitle(trace) = model ne '' && trace ne '' ? model.'  ·  '.trace : model.trace
# Title on top, subtitle in grey below it: call title_block(main, sub) with
# `eval title_block(...)`; gnuplot functions cannot run commands, eval can.
title_block(main, sub) = sprintf("set tmargin %d; set title '%s' font ',14' offset 0,%s; ", \
    sub ne '' ? 5 : 3, quote(main), sub ne '' ? '1.2' : '0') . \
    (sub ne '' ? sprintf("set label 99 '%s' at graph 0.5, graph 1.04 center font ',10' tc rgb '#555555'", quote(sub)) : 'unset label 99')
set key box opaque samplen 3 spacing 1.1
set border 3
set tics nomirror
set grid lw 0.5 lc rgb '#dddddd'
