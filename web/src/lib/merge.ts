// The side-by-side merge of duplicates: which single fields differ, the value the server's
// rule would keep (the survivor's non-empty value, else the first source's), and the
// `keep` body that makes the user's picks survive (POST /contacts/{id}/merge).
export const MERGE_FIELDS = ["first_name", "last_name", "position", "company_id", "owner_id", "birthday", "source"] as const;
export type MergeField = (typeof MERGE_FIELDS)[number];
export type MergeRecord = { id?: string } & Partial<Record<MergeField, string | null>>;

const empty = (value: unknown) => value === null || value === undefined || value === "";

/** The fields whose values are not all the same (blank counts as a value). */
export function conflicts(records: MergeRecord[]): MergeField[] {
  return MERGE_FIELDS.filter((field) => new Set(records.map((r) => (empty(r[field]) ? "" : r[field]))).size > 1);
}

/** field -> id of the contact whose value the server's rule keeps. */
export function defaultChoices(survivor: MergeRecord, sources: MergeRecord[]): Record<MergeField, string> {
  const out = {} as Record<MergeField, string>;
  for (const field of MERGE_FIELDS) {
    const donor = empty(survivor[field]) ? sources.find((s) => !empty(s[field])) : undefined;
    out[field] = (donor ?? survivor).id!;
  }
  return out;
}

/** The `keep` of the merge body: the picks of the fields that differ, and only where they
 * are not what the rule keeps anyway. */
export function keepBody(survivor: MergeRecord, sources: MergeRecord[], picks: Partial<Record<MergeField, string>>) {
  const rule = defaultChoices(survivor, sources);
  const keep: Partial<Record<MergeField, string>> = {};
  for (const field of conflicts([survivor, ...sources])) {
    const pick = picks[field];
    if (pick && pick !== rule[field]) keep[field] = pick;
  }
  return keep;
}
