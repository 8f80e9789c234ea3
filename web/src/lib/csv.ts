// A preview of a CSV file's first rows in the browser (the server detects the encoding and
// delimiter again and is the one that counts); pure, unit-tested.

/** The delimiter among , ; tab | that splits the header line into the most columns. */
export function guessDelimiter(text: string) {
  const header = text.split(/\r?\n/, 1)[0] ?? "";
  let best = ",", most = 0;
  for (const candidate of [",", ";", "\t", "|"]) {
    const count = splitLine(header, candidate).length;
    if (count > most) { most = count; best = candidate; }
  }
  return best;
}

function splitLine(line: string, delimiter: string) {
  const cells: string[] = [];
  let cell = "", quoted = false;
  for (let i = 0; i < line.length; i++) {
    const ch = line[i];
    if (quoted) {
      if (ch === '"' && line[i + 1] === '"') { cell += '"'; i++; }
      else if (ch === '"') quoted = false;
      else cell += ch;
    } else if (ch === '"') quoted = true;
    else if (ch === delimiter) { cells.push(cell); cell = ""; }
    else cell += ch;
  }
  cells.push(cell);
  return cells;
}

/** The first `limit` rows (header included) of a CSV text; quoted line breaks are kept. */
export function previewRows(text: string, delimiter = guessDelimiter(text), limit = 6) {
  const rows: string[][] = [];
  let line = "", quotes = 0;
  for (const part of text.replace(/^\ufeff/, "").split(/\r?\n/)) {
    line = line ? `${line}\n${part}` : part;
    quotes += (part.match(/"/g) ?? []).length;
    if (quotes % 2) continue;  // inside a quoted cell
    if (line.trim()) rows.push(splitLine(line, delimiter));
    line = ""; quotes = 0;
    if (rows.length >= limit) break;
  }
  return rows;
}
