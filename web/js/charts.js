// The page's charts (Chart.js, bundled from node_modules). Every point drawn comes from the
// worker's measurements; nothing here invents data.
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#8c564b', '#e377c2', '#17becf'];

// The legend as a list under the chart (Chart.js draws its own inside the canvas, where eight
// runs' traces crowd out the plot): it scrolls when long, and each entry hides or shows its trace.
const htmlLegend = {
  id: 'htmlLegend',
  afterUpdate(chart) {
    const list = document.getElementById(`${chart.canvas.id.replace(/-chart$/, '')}-legend`);
    if (!list) return;
    list.replaceChildren(...chart.data.datasets.map((d, i) => {
      const item = document.createElement('li');
      const button = document.createElement('button');
      button.type = 'button';
      const visible = chart.isDatasetVisible(i);
      button.setAttribute('aria-pressed', String(visible));
      const swatch = document.createElement('span');
      swatch.className = d.borderDash ? 'swatch dashed' : 'swatch';
      swatch.style.borderColor = d.borderColor;
      button.append(swatch, d.label);
      // Read at the click, not when the legend was drawn: a chart update from a run that is still
      // drawing can land between the two.
      button.onclick = () => {
        chart.setDatasetVisibility(i, !chart.isDatasetVisible(i));
        chart.update();
      };
      item.append(button);
      return item;
    }));
  },
};

function scatter(canvas, xTitle, yTitle, extra = {}) {
  return new Chart(canvas, {
    type: 'scatter',
    data: { datasets: [] },
    plugins: [htmlLegend],
    options: {
      animation: false,
      responsive: true,
      maintainAspectRatio: false,
      plugins: { legend: { display: false }, title: { display: !!extra.title, text: extra.title } },
      scales: {
        x: { title: { display: true, text: xTitle }, type: extra.xLog ? 'logarithmic' : 'linear' },
        y: { title: { display: true, text: yTitle } },
      },
    },
  });
}

function dataset(chart, label, style) {
  let d = chart.data.datasets.find((s) => s.label === label);
  if (!d) {
    d = { label, data: [], showLine: true, borderWidth: 2, pointRadius: 3, ...style };
    chart.data.datasets.push(d);
  }
  return d;
}

export function createCharts() {
  const charts = {
    loss: scatter(document.getElementById('loss-chart'), 'step', 'loss / accuracy', { title: 'Reward model training' }),
    frontier: scatter(document.getElementById('frontier-chart'), '√KL(π ‖ π_ref)', 'reward', { title: 'Reward against √KL' }),
    proxyGold: scatter(document.getElementById('proxy-gold-chart'), 'reward model (proxy)', 'gold reward', { title: 'Proxy against gold' }),
    bon: scatter(document.getElementById('bon-chart'), 'n', 'KL(best-of-n ‖ π_ref)', { title: 'Best-of-n: KL', xLog: true }),
    runLoss: scatter(document.getElementById('run-loss-chart'), 'step', 'score − β·KL (online) or loss (on labels)', { title: 'Training signal' }),
  };
  // A GPU process crash (a lost GPU device) also wipes accelerated 2D canvases; Chromium restores
  // the context empty, so every chart draws itself again when it comes back.
  for (const chart of Object.values(charts)) {
    chart.canvas.addEventListener('contextrestored', () => chart.update('none'));
  }
  const runColors = new Map();
  const colorOf = (name) => {
    if (!runColors.has(name)) runColors.set(name, COLORS[runColors.size % COLORS.length]);
    return runColors.get(name);
  };

  return {
    charts,
    clearRewardModel() {
      charts.loss.data.datasets = [];
      charts.loss.update();
    },
    rewardStep(p) {
      dataset(charts.loss, 'loss', { borderColor: COLORS[0], backgroundColor: COLORS[0] }).data.push({ x: p.step, y: p.loss });
      dataset(charts.loss, 'batch accuracy', { borderColor: COLORS[2], backgroundColor: COLORS[2], borderDash: [4, 3] })
        .data.push({ x: p.step, y: p.accuracy });
      charts.loss.update();
    },
    // A measured policy of run `name`: proxy (solid) and gold (dashed) against √KL.
    runPoint(name, point) {
      const color = colorOf(name);
      const proxy = point.proxies && point.proxies.rm;
      if (proxy) {
        dataset(charts.frontier, `${name} · reward model`, { borderColor: color, backgroundColor: color })
          .data.push({ x: point.sqrt_kl, y: proxy.mean });
        dataset(charts.proxyGold, name, { borderColor: color, backgroundColor: color })
          .data.push({ x: proxy.mean, y: point.gold.mean });
      }
      dataset(charts.frontier, `${name} · gold`, { borderColor: color, backgroundColor: color, borderDash: [6, 4] })
        .data.push({ x: point.sqrt_kl, y: point.gold.mean });
      charts.frontier.update();
      charts.proxyGold.update();
    },
    runLoss(name, what, step, value) {
      if (!Number.isFinite(value)) return;
      const color = colorOf(name);
      dataset(charts.runLoss, `${name} · ${what}`, { borderColor: color, backgroundColor: color }).data.push({ x: step, y: value });
      charts.runLoss.update();
    },
    // Best-of-n: KL against n (the analytic bound as a curve, the measured estimate as points),
    // and its rewards on the frontier chart at √(measured KL), like every other policy.
    bestOfN(points) {
      const analytic = dataset(charts.bon, 'analytic bound: log n − (n−1)/n', { borderColor: '#555', backgroundColor: '#555' });
      const measured = dataset(charts.bon, 'measured (± 95% CI)', { borderColor: COLORS[3], backgroundColor: COLORS[3], showLine: false });
      analytic.data = points.map((p) => ({ x: p.n, y: p.analytic_kl }));
      measured.data = points.map((p) => ({ x: p.n, y: p.kl.mean }));
      charts.bon.update();
      const color = colorOf('best-of-n');
      const selector = dataset(charts.frontier, 'best-of-n · selecting reward', { borderColor: color, backgroundColor: color });
      const sqrtKl = (p) => Math.sqrt(Math.max(p.kl.mean, 0));
      selector.data = points.map((p) => ({ x: sqrtKl(p), y: p.reward.mean }));
      const gold = dataset(charts.frontier, 'best-of-n · gold', { borderColor: color, backgroundColor: color, borderDash: [6, 4] });
      gold.data = points.filter((p) => p.monitor_reward).map((p) => ({ x: sqrtKl(p), y: p.monitor_reward.mean }));
      charts.frontier.update();
    },
    pointCount(chartName) {
      return charts[chartName].data.datasets.reduce((n, d) => n + d.data.length, 0);
    },
  };
}
