(function () {
  "use strict";
  var body = document.body;
  var base = new URL(body.getAttribute("data-root") || "./", location.href);
  var live = base.protocol === "http:" || base.protocol === "https:";

  // The fetch commands name the registry: this page's own base URL (or directory on file://).
  function registryText() {
    if (live) return base.href.replace(/\/$/, "");
    if (base.protocol === "file:") return decodeURIComponent(base.pathname).replace(/\/$/, "");
    return null;
  }
  function shellQuote(text) {
    return /^[A-Za-z0-9_@%+=:,.\/~-]+$/.test(text) ? text : "'" + text.replace(/'/g, "'\\''") + "'";
  }
  var registry = registryText();
  var registryShown = registry ? shellQuote(registry) : {{ placeholder|tojson }};
  document.querySelectorAll(".reg").forEach(function (el) { el.textContent = registryShown; });

  // Copy buttons (shown only when the script runs; without it a click selects a whole command).
  // The clipboard API needs a secure origin: elsewhere (http://a.lan.host) copy the selection.
  body.classList.add("js");
  function copied(button) {
    button.classList.add("copied");
    button.textContent = "Copied";
    setTimeout(function () { button.classList.remove("copied"); button.textContent = "Copy"; }, 1200);
  }
  function copyBySelection(code, button) {
    var selection = window.getSelection();
    selection.selectAllChildren(code);
    try { if (document.execCommand("copy")) copied(button); } catch (e) { /* stays selected */ }
  }
  document.addEventListener("click", function (event) {
    var button = event.target.closest && event.target.closest("button.copy");
    if (!button) return;
    var code = button.parentNode.querySelector("code.cmd");
    if (!navigator.clipboard) { copyBySelection(code, button); return; }
    navigator.clipboard.writeText(code.textContent).then(function () { copied(button); },
      function () { copyBySelection(code, button); });
  });

  // The filter box: every word must occur in a model's name, description or tags.
  var box = document.getElementById("filter");
  if (box) {
    var items = Array.prototype.slice.call(document.querySelectorAll("[data-item]"));
    var texts = items.map(function (el) {
      return (el.querySelector(".head") || el).textContent.toLowerCase();
    });
    var count = document.getElementById("count");
    var apply = function () {
      var words = box.value.toLowerCase().split(/\s+/).filter(Boolean);
      var shown = 0;
      items.forEach(function (el, i) {
        var match = words.every(function (w) { return texts[i].indexOf(w) >= 0; });
        el.hidden = !match;
        if (match) shown += 1;
      });
      var more = showElsewhere(words);
      count.textContent = words.length ? shown + " of " + items.length + " shown" +
        (more ? ", " + more + " more on other pages" : "") : "";
    };
    // A page of a long list holds some models: over http(s) the names of all of them come from
    // index.json, and a name on another page matches as a link to the model's own page.
    var others = [];
    var elsewhere = document.getElementById("elsewhere");
    if (elsewhere && live && window.fetch) {
      var here = {};
      items.forEach(function (item) { here[item.getAttribute("data-id")] = true; });
      fetch(new URL("index.json", base).href, { cache: "no-cache" })
        .then(function (r) { return r.ok ? r.json() : null; })
        .then(function (index) {
          if (!index || !index.models) return;
          others = Object.keys(index.models).filter(function (m) { return !here[m]; }).sort();
          apply();
        })
        .catch(function () { /* this page's rows are still filtered */ });
    }
    var showElsewhere = function (words) {
      if (!elsewhere) return 0;
      var found = words.length ? others.filter(function (m) {
        var name = m.toLowerCase();
        return words.every(function (w) { return name.indexOf(w) >= 0; });
      }) : [];
      elsewhere.textContent = "";
      elsewhere.hidden = !found.length;
      if (!found.length) return 0;
      elsewhere.appendChild(document.createTextNode("On other pages of the list (by name):"));
      var list = document.createElement("ul");
      found.slice(0, 200).forEach(function (m) {
        var li = document.createElement("li");
        var link = document.createElement("a");
        link.href = new URL("models/" + encodeURIComponent(m) + ".html", base).href;
        link.textContent = m;
        li.appendChild(link);
        list.appendChild(li);
      });
      elsewhere.appendChild(list);
      return found.length;
    };
    var query = new URLSearchParams(location.search).get("q");
    if (query) box.value = query;
    box.addEventListener("input", function () {
      apply();
      try {
        var url = new URL(location.href);
        if (box.value) url.searchParams.set("q", box.value); else url.searchParams.delete("q");
        history.replaceState(null, "", url.href);
      } catch (e) { /* file:// may refuse; the filter still works */ }
    });
    document.getElementById("toolbar").hidden = false;
    apply();
  }

  // Aliases move without a re-render: re-read aliases/<id>/index.json for each model in view.
  function when(t) {
    var m = /^(\d{4}-\d\d-\d\d)T(\d\d:\d\d)(?::\d\d(?:\.\d+)?)?(?:Z|\+00:00)$/.exec(t || "");
    return m ? m[1] + " " + m[2] + " UTC" : (t || "");
  }
  function el(tag, cls, text) {
    var node = document.createElement(tag);
    if (cls) node.className = cls;
    if (text !== undefined) node.textContent = text;
    return node;
  }
  function historyItem(r) {
    var li = el("li");
    li.appendChild(el("span", "seq", "#" + r.seq));
    var prev = r.previous === null || r.previous === undefined ? "(none)" : r.previous;
    var text = " " + when(r.time) + " \u00b7 " + r.actor + " \u00b7 " + prev + " \u2192 " + r.version;
    li.appendChild(document.createTextNode(text + (r.reason ? " \u00b7 " + r.reason : "")));
    return li;
  }
  // The same markup as render.fetch_command.
  function fetchCommand(ref) {
    var line = el("div", "cmdline");
    var code = el("code", "cmd");
    code.appendChild(el("span", "w", {{ command|tojson }}));
    code.appendChild(document.createTextNode(" "));
    code.appendChild(el("span", "w", ref));
    code.appendChild(document.createTextNode(" "));
    code.appendChild(el("span", "w", "--registry"));
    code.appendChild(document.createTextNode(" "));
    code.appendChild(el("span", "reg", registryShown));
    line.appendChild(code);
    line.appendChild(el("button", "copy", "Copy"));
    return line;
  }
  function aliasItem(model, a, pages) {
    var li = el("li");
    li.appendChild(el("span", "alias-name", a.alias));
    li.appendChild(document.createTextNode(" \u2192 "));
    var link = el("a", "alias-version", a.version);
    // A version on another page of a split model keeps the page the render linked it to.
    link.href = (pages[a.version] || "") + "#m-" + model + "@" + a.version;
    li.appendChild(link);
    li.appendChild(document.createTextNode(" "));
    var meta = "by " + a.actor + ", " + when(a.time) + (a.reason ? ": " + a.reason : "");
    li.appendChild(el("span", "alias-meta", meta));
    li.appendChild(fetchCommand(model + "@" + a.alias));
    var history = a.history || [];
    if (history.length) {
      var details = el("details", "history");
      details.appendChild(el("summary", "", "History (" + history.length + ")"));
      var list = el("ol");
      list.reversed = true;
      history.slice().reverse().forEach(function (r) { list.appendChild(historyItem(r)); });
      details.appendChild(list);
      li.appendChild(details);
    }
    return li;
  }
  function renderAliases(box, view) {
    var model = box.getAttribute("data-model");
    var aliases = view.aliases || [];
    var pages = {};
    box.querySelectorAll("a.alias-version").forEach(function (a) {
      pages[a.textContent] = a.getAttribute("href").split("#")[0];
    });
    box.textContent = "";
    if (box.classList.contains("badges")) {
      aliases.forEach(function (a) { box.appendChild(el("span", "badge", a.alias + " \u2192 " + a.version)); });
      return;
    }
    if (!aliases.length) return;
    box.appendChild(el("h3", "", "Aliases"));
    var list = el("ul", "alias-list");
    aliases.forEach(function (a) { list.appendChild(aliasItem(model, a, pages)); });
    box.appendChild(list);
  }
  function refresh(box) {
    var model = box.getAttribute("data-model");
    var url = new URL("aliases/" + encodeURIComponent(model) + "/index.json", base);
    fetch(url.href, { cache: "no-store" })
      .then(function (r) { return r.ok ? r.json() : null; })
      .then(function (view) { if (view && view.model === model) renderAliases(box, view); })
      .catch(function () { /* keep what the page was rendered with */ });
  }
  if (!live && document.querySelector("[data-model]")) {
    // A file cannot be re-read by script: say that the aliases are as of the render.
    var note = el("p", "offline", "Opened from a file: aliases are shown as of the last render. " +
      "Served over HTTP(S), this page reads them live.");
    var main = document.querySelector("main");
    main.insertBefore(note, main.firstChild);
  }
  if (live && window.fetch) {
    // Boxes on screen (or near it) refresh at once; the rest when they scroll into view.
    var margin = 600;
    var observer = "IntersectionObserver" in window ? new IntersectionObserver(function (entries) {
      entries.forEach(function (entry) {
        if (!entry.isIntersecting) return;
        observer.unobserve(entry.target);
        refresh(entry.target);
      });
    }, { rootMargin: margin + "px 0px" }) : null;
    document.querySelectorAll("[data-model]").forEach(function (b) {
      var r = b.getBoundingClientRect();
      var near = r.top < window.innerHeight + margin && r.bottom > -margin;
      if (near || !observer) refresh(b); else observer.observe(b);
    });
  }
})();
