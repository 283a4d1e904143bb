// Sortable tables: a click on a header of a table.sortable orders its body by that column
// (numbers as numbers, the rest as text); a second click reverses. No library needed.
document.addEventListener("DOMContentLoaded", () => {
  for (const table of document.querySelectorAll("table.sortable")) {
    table.querySelectorAll("thead th").forEach((th, column) => {
      th.tabIndex = 0;
      th.title = "sort";
      const sort = () => {
        const body = table.tBodies[0];
        const descending = th.dataset.order !== "desc";
        table.querySelectorAll("thead th").forEach((other) => delete other.dataset.order);
        th.dataset.order = descending ? "desc" : "asc";
        const key = (row) => {
          const cell = row.cells[column];
          const text = cell ? (cell.dataset.value ?? cell.textContent.trim()) : "";
          const number = parseFloat(text.replace(/[,%]/g, ""));
          return Number.isNaN(number) ? text.toLowerCase() : number;
        };
        const rows = Array.from(body.rows);
        rows.sort((a, b) => {
          const x = key(a), y = key(b);
          const order = typeof x === typeof y ? (x < y ? -1 : x > y ? 1 : 0) : typeof x === "number" ? -1 : 1;
          return descending ? -order : order;
        });
        rows.forEach((row) => body.appendChild(row));
      };
      th.addEventListener("click", sort);
      th.addEventListener("keydown", (e) => { if (e.key === "Enter") sort(); });
    });
  }
});
