# bench/churn-plot.gp: the plot of bench/compare.sh --arrivals.
#
# Called by the script as
#   gnuplot -e "dir='OUT'; reps='1 2'; subtitle='...'; steadyT='6.71'; xmax=90" bench/churn-plot.gp
# It reads OUT/plot/churn-ts-R.dat (t, x, y measured in repetition R),
# OUT/plot/churn-dl-R.dat (arrival time, download time of each downloader),
# OUT/plot/churn-model.dat (the fluid model: t x y arrived completed
# departed) and OUT/plot/churn-model-T.dat (arrival time, the model's
# download time with equal shares), and writes OUT/churn.png: above, the
# downloaders x(t) and seeders y(t), measured and modelled; below, each
# download time against its arrival, with the model's.

if (!exists("subtitle")) subtitle = ''
if (!exists("steadyT")) steadyT = ''
if (!exists("xmax")) xmax = 0
ts(r) = dir.'/plot/churn-ts-'.r.'.dat'
dl(r) = dir.'/plot/churn-dl-'.r.'.dat'
model = dir.'/plot/churn-model.dat'
modelT = dir.'/plot/churn-model-T.dat'
nreps = words(reps)
suffix(r) = nreps > 1 ? ', rep '.r : ''

set style line 1 lc rgb '#b2182b' lw 2
set style line 2 lc rgb '#2166ac' lw 2
set style line 11 lc rgb '#b2182b' lw 2 dt 2
set style line 12 lc rgb '#2166ac' lw 2 dt 2
set style line 3 lc rgb '#1b7837' pt 7 ps 1.1
set style line 13 lc rgb '#1b7837' lw 2 dt 2
set style line 14 lc rgb '#555555' lw 1.5 dt 3

set terminal pngcairo size 900,900 font 'sans,11' enhanced
set output dir.'/churn.png'
set multiplot layout 2, 1 title "a flash crowd with churn: shoal p2p against the fluid model\n{/*0.8 ".subtitle."}"
set grid
set key top right box opaque
if (xmax > 0) { set xrange [0:xmax] } else { set xrange [0:*] }
set yrange [0:*]

set title 'peers in the swarm (the origin not counted)'
set xlabel 'time since the start (s)'
set ylabel 'peers'
plot for [r in reps] ts(r) using 1:2 with steps ls 1 title 'downloaders x, measured'.suffix(r), \
     for [r in reps] ts(r) using 1:3 with steps ls 2 title 'seeders y, measured'.suffix(r), \
     model using 1:2 with lines ls 11 title 'x, fluid model', \
     model using 1:3 with lines ls 12 title 'y, fluid model'

set title 'download time of each downloader, by its arrival'
set xlabel 'arrival time (s)'
set ylabel 'download time (s)'
set key bottom right box opaque
if (steadyT ne '') {
  plot for [r in reps] dl(r) using 1:2 with points ls 3 title 'measured'.suffix(r), \
       modelT using 1:2 with lines ls 13 title 'fluid model (equal shares)', \
       steadyT + 0 with lines ls 14 title sprintf('fluid model, steady state T = %.2f s', steadyT + 0)
} else {
  plot for [r in reps] dl(r) using 1:2 with points ls 3 title 'measured'.suffix(r), \
       modelT using 1:2 with lines ls 13 title 'fluid model (equal shares)'
}
unset multiplot
