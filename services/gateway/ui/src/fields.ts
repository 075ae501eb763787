// Server field paths (google.rpc.BadRequest) -> the form field they concern.

/** "jobs[0].depends_on[1]" -> "jobs[0].depends_on"; "jobs[1].params.mpp" -> "jobs[1].params". */
export function normaliseField(field: string): string {
  const m = /^(jobs\[\d+\])\.([a-z_]+)/.exec(field);
  if (m) return `${m[1]}.${m[2]}`;
  return field.replace(/\[\d+\]$/, "");
}
