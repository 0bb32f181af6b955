(function () {
  var svg = document.getElementById('gantt');
  var bars = svg.querySelectorAll('g.task');
  var rows = {};
  document.querySelectorAll('#tasks tr[data-index]').forEach(function (row) {
    rows[row.getAttribute('data-index')] = row;
  });
  var groups = {};
  bars.forEach(function (g) { groups[g.getAttribute('data-index')] = g; });
  function hot(index, on) {
    var g = groups[index], row = rows[index];
    if (g) g.classList.toggle('hot', on);
    if (row) row.classList.toggle('hot', on);
  }
  bars.forEach(function (g) {
    var i = g.getAttribute('data-index');
    g.addEventListener('mouseenter', function () { hot(i, true); });
    g.addEventListener('mouseleave', function () { hot(i, false); });
  });
  Object.keys(rows).forEach(function (i) {
    rows[i].addEventListener('mouseenter', function () { hot(i, true); });
    rows[i].addEventListener('mouseleave', function () { hot(i, false); });
  });
  document.querySelectorAll('.legend .item[data-bucket]').forEach(function (item) {
    item.addEventListener('click', function () {
      var bucket = item.getAttribute('data-bucket');
      var off = item.classList.toggle('off');
      bars.forEach(function (g) {
        if (g.getAttribute('data-bucket') === bucket) g.classList.toggle('dim', off);
      });
    });
  });
  document.documentElement.setAttribute('data-bars', String(bars.length));
  var count = document.getElementById('bar-count');
  if (count) count.textContent = bars.length + ' tasks drawn';
})();
