# bench/compare-plot.gp: the plots of bench/compare.sh.
#
# Called by the script as
#   gnuplot -e "dir='OUT'; systems='p2p cs http'; ns='1 2 4'; subtitle='...'; httplabel='...'" bench/compare-plot.gp
# It reads OUT/plot/bounds.dat (N, client-server bound, peer-to-peer bound),
# OUT/plot/d-SYSTEM.dat (N, D median, min, max, bound, D/bound median,
# min, max) and OUT/plot/cdf-N-SYSTEM.dat (completion time, fraction), and
# writes OUT/d_vs_n.png, OUT/ratio.png and OUT/cdf.png.

if (!exists("httplabel")) httplabel = 'HTTP'
if (!exists("subtitle")) subtitle = ''
label(s) = s eq 'p2p' ? 'shoal p2p' : (s eq 'cs' ? 'shoal cs' : httplabel)
colour(s) = s eq 'p2p' ? 1 : (s eq 'cs' ? 2 : 3)
dat(s) = dir.'/plot/d-'.s.'.dat'

set style line 1 lc rgb '#1b7837' lw 2 pt 7 ps 1.2
set style line 2 lc rgb '#b2182b' lw 2 pt 5 ps 1.2
set style line 3 lc rgb '#2166ac' lw 2 pt 9 ps 1.4
set style line 11 lc rgb '#b2182b' lw 1.5 dt 2
set style line 12 lc rgb '#1b7837' lw 1.5 dt 2
set style line 13 lc rgb '#555555' lw 1 dt 3

set terminal pngcairo size 900,600 font 'sans,11' enhanced
set grid
set key top left box opaque
set logscale x 2
set xlabel 'downloaders N'
set xtics (1, 2, 4, 8, 16, 32, 64, 128)
set offsets graph 0.05, graph 0.05, graph 0.05, 0

# D against N, with both lower bounds.
set output dir.'/d_vs_n.png'
set title "distribution time D (median, bars: min-max)\n{/*0.8 ".subtitle."}"
set ylabel 'D (s)'
set yrange [0:*]
plot dir.'/plot/bounds.dat' using 1:2 with lines ls 11 title 'client-server bound', \
     dir.'/plot/bounds.dat' using 1:3 with lines ls 12 title 'peer-to-peer bound', \
     for [s in systems] dat(s) using 1:2:3:4 with yerrorlines ls colour(s) title label(s)

# D over its own bound, with the targets.
set output dir.'/ratio.png'
set title "D / its lower bound (p2p: peer-to-peer bound; cs and HTTP: client-server bound)\n{/*0.8 ".subtitle."}"
set ylabel 'D / bound'
set yrange [0.9:*]
plot 1 with lines ls 13 title 'bound', \
     1.10 with lines ls 12 title 'p2p target 1.10', \
     1.06 with lines ls 11 title 'cs target 1.06', \
     for [s in systems] dat(s) using 1:6:7:8 with yerrorlines ls colour(s) title label(s)

# Completion-time CDF, one panel per N.
nn = words(ns)
cols = nn < 3 ? nn : 3
rows = (nn + cols - 1) / cols
set output dir.'/cdf.png'
set terminal pngcairo size 420 * cols, 340 * rows + 40 font 'sans,10' enhanced
unset logscale x
set xtics autofreq
set offsets 0, 0, 0, 0
set key below horizontal maxrows 1 nobox font ",9"
set yrange [0:1.02]
set xrange [0:*]
set multiplot layout rows, cols title "completion time of each downloader in seconds (CDF over all runs)  {/*0.8 ".subtitle."}"
do for [k = 1:nn] {
  n = word(ns, k)
  set title 'N = '.n
  unset xlabel
  set ylabel 'fraction complete'
  cdf(s) = dir.'/plot/cdf-'.n.'-'.s.'.dat'
  plot for [s in systems] cdf(s) using 1:2 with steps ls colour(s) title label(s)
}
unset multiplot
