/* govflow console: the diagram viewer and small conveniences. No framework, no build step; everything the page
   needs is in the page (the diagram and its element states in a JSON block) or served by this service. */
(function () {
  "use strict";

  var STATE_CLASS = { completed: "gf-completed", active: "gf-active", waiting: "gf-waiting", failed: "gf-failed" };

  function chinaDay(iso) {
    if (!iso) return "";
    var at = new Date(new Date(iso).getTime() + 8 * 3600 * 1000);  // China time, whatever the browser's zone
    if (at.getUTCHours() === 0 && at.getUTCMinutes() === 0) at = new Date(at.getTime() - 1000);
    return (at.getUTCMonth() + 1) + "月" + at.getUTCDate() + "日";
  }

  function showDiagram() {
    var container = document.getElementById("diagram");
    var source = document.getElementById("diagram-data");
    if (!container || !source || typeof window.BpmnJS === "undefined") return;
    var data = JSON.parse(source.textContent);
    var viewer = new window.BpmnJS({ container: container });
    viewer.importXML(data.xml).then(function () {
      var canvas = viewer.get("canvas");
      var registry = viewer.get("elementRegistry");
      var overlays = viewer.get("overlays");
      var now = Date.now();
      Object.keys(data.elements || {}).forEach(function (id) {
        var e = data.elements[id];
        if (!registry.get(id)) return;
        canvas.addMarker(id, STATE_CLASS[e.state] || "gf-completed");
        if (e.completed_count > 1) {
          overlays.add(id, { position: { top: -8, right: 8 }, html: '<span class="gf-count" title="完成次数">×' + e.completed_count + "</span>" });
        }
        if ((e.state === "active" || e.state === "waiting" || e.state === "failed") && e.due_at) {
          var overdue = new Date(e.due_at).getTime() < now;
          var cls = "gf-due" + (overdue ? " overdue" : (e.state === "waiting" ? " waiting" : ""));
          overlays.add(id, { position: { bottom: 10, left: -4 }, html: '<span class="' + cls + '">' + (overdue ? "逾期 " : "") + chinaDay(e.due_at) + "</span>" });
        }
      });
      fit(canvas, registry);
      container.setAttribute("data-rendered", "true");
      document.querySelectorAll("[data-diagram-fit]").forEach(function (button) {
        button.addEventListener("click", function () { fit(canvas, registry); });
      });
    }).catch(function (err) {
      container.setAttribute("data-rendered", "error");
      container.textContent = "流程图无法显示：" + (err && err.message ? err.message : err);
    });
  }

  function fit(canvas, registry) {
    canvas.zoom("fit-viewport", "auto");
    // a whole lifecycle in lanes is too small to read at the width of a screen: show a readable part of it,
    // around the steps under way (the viewer pans and zooms with the mouse, touch or the "fit" button)
    var readable = window.innerWidth < 640 ? 0.55 : 0.8;
    var marked = document.querySelectorAll(".djs-element.gf-active, .djs-element.gf-waiting, .djs-element.gf-failed");
    if (canvas.zoom() >= readable * 0.75) return;
    if (!marked.length) {
      // nothing under way (a definition): a readable start, at the start event on the left
      var start = registry.filter(function (e) { return e.type === "bpmn:StartEvent" && !e.labelTarget; })[0];
      if (!start) return;
      var inner = canvas.viewbox().inner;
      canvas.zoom(readable);
      var shown = canvas.viewbox();
      canvas.viewbox({ x: inner.x - 20, y: start.y + start.height / 2 - shown.height / 2,
                       width: shown.width, height: shown.height });
      return;
    }
    var boxes = [];
    marked.forEach(function (node) {
      var e = registry.get(node.getAttribute("data-element-id"));
      if (e && !e.waypoints) boxes.push(e);
    });
    if (!boxes.length) return;
    canvas.zoom(readable);
    var view = canvas.viewbox();
    var box = bounds(boxes);
    if (box.width > view.width * 0.9 || box.height > view.height * 0.8) {
      // steps far apart: the step under way first (an active task before the timers and notices around it)
      var first = document.querySelector(".djs-element.gf-active") || marked[0];
      box = bounds([registry.get(first.getAttribute("data-element-id"))]);
    }
    canvas.viewbox({ x: box.x + box.width / 2 - view.width / 2, y: box.y + box.height / 2 - view.height / 2,
                     width: view.width, height: view.height });
  }

  function bounds(elements) {
    var minX = Infinity, minY = Infinity, maxX = -Infinity, maxY = -Infinity;
    elements.forEach(function (e) {
      minX = Math.min(minX, e.x); minY = Math.min(minY, e.y);
      maxX = Math.max(maxX, e.x + e.width); maxY = Math.max(maxY, e.y + e.height);
    });
    return { x: minX, y: minY, width: maxX - minX, height: maxY - minY };
  }

  function focusErrors() {
    var summary = document.getElementById("error-summary");
    if (summary) summary.focus();
  }

  document.addEventListener("DOMContentLoaded", function () {
    showDiagram();
    focusErrors();
  });
})();
