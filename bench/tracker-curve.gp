# bench/tracker-curve.gp: the plot of bench/tracker-load --curve.
#
# Called by `make tracker-curve` as
#   gnuplot -e "dir='DIR'; out='FILE.png'; subtitle='...'" bench/tracker-curve.gp
# It reads DIR/memory.dat, DIR/redis.dat and DIR/redis2.dat (one line per
# step: asked, offered, answered a second, p50, p95, p99 ms, errors %,
# tracker, redis, bench and machine cores, saturated 0/1; a configuration
# whose file is missing is left out) and writes FILE.png: on the left
# p50/p95/p99 latency against offered announces a second, on the right the
# replies a second against the same (linear axes). The last step of a
# curve is the one that saturated, if any did.

if (!exists("subtitle")) subtitle = ''
configs = 'memory redis redis2'
label(c) = c eq 'memory' ? '1 tracker, memory' : \
           (c eq 'redis' ? '1 tracker, Redis' : '2 trackers, 1 Redis')
colour(c) = c eq 'memory' ? '#1b7837' : (c eq 'redis' ? '#b2182b' : '#2166ac')
dat(c) = dir.'/'.c.'.dat'
have(c) = system('test -s '.dat(c).' && echo 1 || echo 0') eq "1"
present = ''
do for [c in configs] { if (have(c)) { present = present.' '.c } }

set terminal pngcairo size 1300,560 font 'sans,11' enhanced
set output out
set multiplot layout 1, 2 title "shoal-tracker: latency and replies against offered load (announces a second, open loop)\n{/*0.8 ".subtitle."}"
set grid
set logscale x 10
set autoscale xfix
set offsets graph 0.04, graph 0.04, 0, 0
set xlabel 'offered announces a second'
set format x '%g'

# Latency: p50 dotted, p95 dashed, p99 solid; one colour per configuration.
set title 'reply latency'
set ylabel 'latency (ms)'
set logscale y 10
set format y '%g'
set key top left box opaque font ',9'
plot for [c in present] dat(c) using 2:4 with linespoints lc rgb colour(c) lw 1.5 dt 3 pt 6 ps 0.8 title label(c).', p50', \
     for [c in present] dat(c) using 2:5 with linespoints lc rgb colour(c) lw 1.5 dt 2 pt 4 ps 0.8 title label(c).', p95', \
     for [c in present] dat(c) using 2:6 with linespoints lc rgb colour(c) lw 2 dt 1 pt 7 ps 0.9 title label(c).', p99'

# Throughput: replies a second against offered, on linear axes, with the
# line where replies would equal the offered load.
xmax = 0
do for [c in present] {
  stats dat(c) using 2 nooutput
  if (STATS_max > xmax) { xmax = STATS_max }
}
unset logscale x
unset logscale y
set offsets 0, 0, 0, 0
set xrange [0:xmax * 1.05]
set yrange [0:xmax * 1.05]
set title 'replies a second'
set ylabel 'replies a second'
set format y '%g'
set key top left box opaque font ',9'
plot x with lines lc rgb '#555555' dt 3 title 'replies = offered', \
     for [c in present] dat(c) using 2:3 with linespoints lc rgb colour(c) lw 2 pt 7 ps 0.9 title label(c)
unset multiplot
