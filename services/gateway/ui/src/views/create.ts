// Create a workflow: a form (jobs, type, slide path, branch, dependencies, params) or
// the same request as JSON. The server validates; its google.rpc.BadRequest field
// violations (e.g. "jobs[2].depends_on") are shown on the field they concern.
import { create, fromJson, toJson, type JsonObject, type JsonValue } from "@bufbuild/protobuf";
import { problem, uiConfig, workflows, type ApiProblem } from "../api";
import { clear, h, nextId } from "../dom";
import { CreateWorkflowRequestSchema, type CreateWorkflowRequest } from "../gen/slidelane/v1/workflow_service_pb";
import type { ViewContext } from "../main";
import { normaliseField } from "../fields";

export const JOB_TYPES = [
  { value: "cell_segmentation", label: "Cell segmentation (InstanSeg)" },
  { value: "tissue_mask", label: "Tissue mask (Otsu)" },
];

interface JobRow {
  jobId: string;
  jobType: string;
  imagePath: string;
  branch: string;
  dependsOn: string[];
  params: string;
}

interface FieldSlot {
  control: HTMLElement;
  error: HTMLElement;
}


export function createView({ root, signal }: ViewContext): void {
  let roots: string[] = [];
  let name = "";
  let rows: JobRow[] = [newRow(0, "")];
  let mode: "form" | "json" = "form";
  let slots = new Map<string, FieldSlot>();
  let lastProblem: ApiProblem | undefined;
  let submitting = false;

  function newRow(index: number, root0: string): JobRow {
    return {
      jobId: index === 0 ? "segment" : `job${index + 1}`,
      jobType: "cell_segmentation",
      imagePath: root0 ? `${root0.replace(/\/$/, "")}/` : "",
      branch: "main",
      dependsOn: [],
      params: "",
    };
  }

  const summary = h("div", { class: "error-summary", role: "alert", tabindex: "-1", hidden: true });
  const formPanel = h("div", { id: "panel-form", role: "tabpanel", "aria-labelledby": "tab-form" });
  const jsonPanel = h("div", { id: "panel-json", role: "tabpanel", "aria-labelledby": "tab-json", hidden: true });
  const tabForm = h("button", { id: "tab-form", type: "button", role: "tab", "aria-controls": "panel-form", "aria-selected": "true" }, "Form");
  const tabJson = h("button", { id: "tab-json", type: "button", role: "tab", "aria-controls": "panel-json", "aria-selected": "false", tabindex: "-1" }, "JSON");
  const submit = h("button", { type: "submit", class: "primary" }, "Create workflow");
  const status = h("p", { role: "status", class: "live-status" });
  const rootsHint = h("p", { class: "hint", id: "roots-hint" }, "Loading the slide folders…");
  const rootsList = h("datalist", { id: "slide-roots" });

  const jsonId = nextId("json");
  const jsonError = h("div", { id: `${jsonId}-err`, class: "field-error", "aria-live": "polite" });
  const jsonArea = h("textarea", {
    id: jsonId,
    class: "json-editor",
    rows: 22,
    spellcheck: "false",
    "aria-describedby": `${jsonId}-hint ${jsonId}-err`,
  });

  const form = h(
    "form",
    { class: "create", novalidate: true, onsubmit: (e: Event) => { e.preventDefault(); void send(); } },
    h("div", { class: "tabs", role: "tablist", "aria-label": "Edit the workflow as" }, tabForm, tabJson),
    formPanel,
    jsonPanel,
    h("div", { class: "actions" }, submit, h("a", { href: "#/workflows", class: "button" }, "Cancel")),
    status,
  );
  root.append(h("h1", null, "New workflow"), rootsHint, rootsList, summary, form);

  for (const [tab, which] of [[tabForm, "form"], [tabJson, "json"]] as const) {
    tab.addEventListener("click", () => switchMode(which));
    tab.addEventListener("keydown", (e: KeyboardEvent) => {
      if (e.key === "ArrowRight" || e.key === "ArrowLeft" || e.key === "Home" || e.key === "End") {
        e.preventDefault();
        const other = which === "form" ? "json" : "form";
        switchMode(e.key === "Home" ? "form" : e.key === "End" ? "json" : other);
        (mode === "form" ? tabForm : tabJson).focus();
      }
    });
  }

  void uiConfig().then((config) => {
    if (signal.aborted) return;
    roots = config.slide_roots;
    clear(rootsList);
    roots.forEach((r) => rootsList.append(h("option", { value: `${r.replace(/\/$/, "")}/` })));
    rootsHint.textContent = roots.length
      ? `Slides must lie inside ${roots.length === 1 ? "the slide folder" : "one of the slide folders"}: ${roots.join(", ")}. Paths are on the server.`
      : "Slides must lie inside the server's configured slide folders (SLIDELANE_SLIDE_ROOTS). Paths are on the server.";
    if (rows.length === 1 && rows[0].imagePath === "" && roots[0]) rows[0].imagePath = `${roots[0].replace(/\/$/, "")}/`;
    renderForm();
  });

  // ---------------------------------------------------------------- form

  function field(
    key: string,
    label: string,
    control: HTMLInputElement | HTMLSelectElement | HTMLTextAreaElement,
    hint?: string,
  ): HTMLElement {
    const id = control.id || nextId("f");
    control.id = id;
    const error = h("p", { class: "field-error", id: `${id}-err` });
    const hintEl = hint ? h("p", { class: "hint", id: `${id}-hint` }, hint) : null;
    control.setAttribute("aria-describedby", [hintEl ? `${id}-hint` : "", `${id}-err`].filter(Boolean).join(" "));
    control.dataset.field = key;
    slots.set(key, { control, error });
    return h("div", { class: "field" }, h("label", { for: id }, label), control, hintEl, error);
  }

  function renderForm(): void {
    slots = new Map();
    clear(formPanel);
    const nameInput = h("input", { value: name, name: "name", placeholder: "e.g. kidney-batch-3", autocomplete: "off" });
    nameInput.addEventListener("input", () => (name = nameInput.value));
    formPanel.append(field("name", "Workflow name", nameInput));
    const jobsError = h("p", { class: "field-error", id: "jobs-err" });
    slots.set("jobs", { control: formPanel, error: jobsError });
    formPanel.append(jobsError);
    rows.forEach((row, index) => formPanel.append(renderJob(row, index)));
    formPanel.append(
      h(
        "button",
        {
          type: "button",
          onclick: () => {
            syncFromForm();
            rows.push(newRow(rows.length, roots[0] ?? ""));
            renderForm();
            (formPanel.querySelectorAll("fieldset.job")[rows.length - 1]?.querySelector("input") as HTMLInputElement | null)?.focus();
          },
        },
        "Add job",
      ),
    );
    if (lastProblem && mode === "form") showProblem(lastProblem, false);
  }

  function renderJob(row: JobRow, index: number): HTMLElement {
    const prefix = `jobs[${index}]`;
    const jobId = h("input", { value: row.jobId, autocomplete: "off", spellcheck: "false" });
    jobId.addEventListener("input", () => (row.jobId = jobId.value));
    jobId.addEventListener("change", () => renderDeps());
    const jobType = h("select", null, JOB_TYPES.map((t) => h("option", { value: t.value, selected: t.value === row.jobType }, t.label)));
    if (!JOB_TYPES.some((t) => t.value === row.jobType)) jobType.append(h("option", { value: row.jobType, selected: true }, row.jobType));
    jobType.addEventListener("change", () => (row.jobType = jobType.value));
    const image = h("input", { value: row.imagePath, list: "slide-roots", autocomplete: "off", spellcheck: "false", class: "wide" });
    image.addEventListener("input", () => (row.imagePath = image.value));
    const branch = h("input", { value: row.branch, autocomplete: "off", spellcheck: "false", placeholder: "main" });
    branch.addEventListener("input", () => (row.branch = branch.value));
    const params = h("textarea", { rows: 2, spellcheck: "false", placeholder: '{"mpp": 0.5}' }, row.params);
    params.addEventListener("input", () => (row.params = params.value));

    const depsBox = h("div", { class: "deps" });
    const depsError = h("p", { class: "field-error", id: `${prefix}-deps-err` });
    const depsGroup = h(
      "fieldset",
      { class: "field deps-group", "aria-describedby": `${prefix}-deps-err` },
      h("legend", null, "Depends on"),
      depsBox,
      depsError,
    );
    slots.set(`${prefix}.depends_on`, { control: depsGroup, error: depsError });
    const renderDeps = () => {
      clear(depsBox);
      const others = rows.filter((r) => r !== row && r.jobId);
      if (others.length === 0) depsBox.append(h("p", { class: "hint" }, "No other jobs yet."));
      for (const other of others) {
        const id = nextId("dep");
        const box = h("input", { type: "checkbox", id, checked: row.dependsOn.includes(other.jobId), value: other.jobId });
        box.addEventListener("change", () => {
          row.dependsOn = box.checked ? [...new Set([...row.dependsOn, other.jobId])] : row.dependsOn.filter((d) => d !== other.jobId);
        });
        depsBox.append(h("label", { class: "check", for: id }, box, ` ${other.jobId}`));
      }
      // dependencies typed in JSON that name no job of the form stay visible
      for (const missing of row.dependsOn.filter((d) => !others.some((o) => o.jobId === d))) {
        depsBox.append(h("span", { class: "pill" }, `${missing} (no such job)`));
      }
    };
    renderDeps();
    const jobError = h("p", { class: "field-error", id: `${prefix}-err` });
    slots.set(prefix, { control: jobId, error: jobError });

    return h(
      "fieldset",
      { class: "job card", "data-job-index": String(index) },
      h("legend", null, `Job ${index + 1}`),
      jobError,
      h(
        "div",
        { class: "grid" },
        field(`${prefix}.job_id`, "Job id", jobId, "Unique in this workflow; letters, digits, - or _."),
        field(`${prefix}.job_type`, "Job type", jobType),
        field(`${prefix}.branch`, "Branch", branch, "Jobs of one branch run one at a time, in order."),
      ),
      field(`${prefix}.image_path`, "Slide (image path)", image, "A slide file inside a slide folder (see above)."),
      depsGroup,
      h(
        "details",
        { class: "params" },
        h("summary", null, "Parameters (optional JSON)"),
        field(`${prefix}.params`, "Parameters", params, 'An object, e.g. {"mpp": 0.5} to override the pixel size.'),
      ),
      rows.length > 1
        ? h(
            "button",
            {
              type: "button",
              class: "danger-link",
              onclick: () => {
                syncFromForm();
                const removed = rows.splice(index, 1)[0];
                rows.forEach((r) => (r.dependsOn = r.dependsOn.filter((d) => d !== removed.jobId)));
                lastProblem = undefined;
                renderForm();
              },
            },
            `Remove job ${index + 1}`,
          )
        : null,
    );
  }

  function syncFromForm(): void {
    // rows and name are updated on input; nothing else to read.
  }

  // ---------------------------------------------------------------- JSON

  function requestFromForm(): CreateWorkflowRequest {
    return create(CreateWorkflowRequestSchema, {
      name,
      jobs: rows.map((row, index) => ({
        jobId: row.jobId.trim(),
        jobType: row.jobType,
        imagePath: row.imagePath.trim(),
        branch: row.branch.trim(),
        dependsOn: row.dependsOn,
        params: row.params.trim() ? parseParams(row.params, index) : undefined,
      })),
    });
  }

  function parseParams(text: string, index: number) {
    let value: JsonValue;
    try {
      value = JSON.parse(text) as JsonValue;
    } catch (error) {
      throw new ClientFieldError(`jobs[${index}].params`, `Not valid JSON: ${(error as Error).message}`);
    }
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new ClientFieldError(`jobs[${index}].params`, "Parameters must be a JSON object, e.g. {\"mpp\": 0.5}.");
    }
    return value as JsonObject;
  }

  function formToJsonText(): string {
    const json = toJson(CreateWorkflowRequestSchema, requestFromForm(), { useProtoFieldName: true });
    return JSON.stringify(json, null, 2);
  }

  function requestFromJson(): CreateWorkflowRequest {
    let value: JsonValue;
    try {
      value = JSON.parse(jsonArea.value) as JsonValue;
    } catch (error) {
      throw new ClientFieldError("json", `Not valid JSON: ${(error as Error).message}`);
    }
    try {
      return fromJson(CreateWorkflowRequestSchema, value);
    } catch (error) {
      throw new ClientFieldError("json", `Not a workflow request: ${(error as Error).message}`);
    }
  }

  function loadRowsFrom(request: CreateWorkflowRequest): void {
    name = request.name;
    rows = request.jobs.map((job) => ({
      jobId: job.jobId,
      jobType: job.jobType,
      imagePath: job.imagePath,
      branch: job.branch,
      dependsOn: [...job.dependsOn],
      params: job.params && Object.keys(job.params).length ? JSON.stringify(job.params) : "",
    }));
    if (rows.length === 0) rows = [newRow(0, roots[0] ?? "")];
  }

  function renderJsonPanel(): void {
    clear(jsonPanel);
    jsonPanel.append(
      h("label", { for: jsonId }, "Workflow as JSON"),
      h(
        "p",
        { class: "hint", id: `${jsonId}-hint` },
        "The body of POST /api/workflows: name and jobs[] with job_id, job_type, image_path, branch, depends_on, params.",
      ),
      jsonArea,
      jsonError,
    );
  }

  function switchMode(next: "form" | "json"): void {
    if (next === mode) return;
    if (next === "json") {
      try {
        jsonArea.value = formToJsonText();
      } catch (error) {
        if (error instanceof ClientFieldError) showClientError(error);
        return;
      }
      renderJsonPanel();
    } else {
      try {
        loadRowsFrom(requestFromJson());
      } catch (error) {
        if (error instanceof ClientFieldError) showClientError(error);
        return; // stay in JSON until it parses
      }
      mode = next;
      renderForm();
    }
    mode = next;
    tabForm.setAttribute("aria-selected", String(mode === "form"));
    tabJson.setAttribute("aria-selected", String(mode === "json"));
    tabForm.tabIndex = mode === "form" ? 0 : -1;
    tabJson.tabIndex = mode === "json" ? 0 : -1;
    formPanel.hidden = mode !== "form";
    jsonPanel.hidden = mode !== "json";
    if (lastProblem) showProblem(lastProblem, false);
  }

  // ---------------------------------------------------------------- errors

  function clearErrors(): void {
    summary.hidden = true;
    clear(summary);
    jsonError.textContent = "";
    jsonArea.removeAttribute("aria-invalid");
    for (const slot of slots.values()) {
      slot.error.textContent = "";
      slot.control.removeAttribute("aria-invalid");
    }
  }

  function showClientError(error: ClientFieldError): void {
    clearErrors();
    if (error.field === "json") {
      jsonError.textContent = error.message;
      jsonArea.setAttribute("aria-invalid", "true");
      jsonArea.focus();
      return;
    }
    const slot = slots.get(error.field);
    if (slot) {
      slot.error.textContent = error.message;
      slot.control.setAttribute("aria-invalid", "true");
      (slot.control.closest("details") as HTMLDetailsElement | null)?.setAttribute("open", "");
      slot.control.focus();
    }
  }

  function showProblem(p: ApiProblem, focus = true): void {
    clearErrors();
    const unplaced: [string, string][] = [];
    let first: HTMLElement | undefined;
    for (const [rawField, text] of p.fields) {
      const key = normaliseField(rawField);
      const slot = slots.get(key) ?? slots.get(key.replace(/\.[a-z_]+$/, "")) ?? (key.startsWith("jobs") ? slots.get("jobs") : undefined);
      if (mode === "form" && slot) {
        slot.error.textContent = slot.error.textContent ? `${slot.error.textContent} ${text}` : text;
        slot.error.dataset.field = rawField;
        slot.control.setAttribute("aria-invalid", "true");
        (slot.control.closest("details") as HTMLDetailsElement | null)?.setAttribute("open", "");
        first ??= slot.control;
      } else {
        unplaced.push([rawField, text]);
      }
    }
    if (mode === "json" && p.fields.size > 0) {
      jsonArea.setAttribute("aria-invalid", "true");
      jsonError.replaceChildren(
        h("ul", null, [...p.fields].map(([f, t]) => h("li", { "data-field": f }, h("code", null, f), ": ", t))),
      );
    }
    summary.replaceChildren(
      h("strong", null, p.fields.size ? "The server refused the workflow:" : "The workflow was not created:"),
      p.fields.size
        ? h(
            "ul",
            null,
            [...p.fields].map(([f, t]) => {
              const slot = slots.get(normaliseField(f));
              const link = mode === "form" && slot?.control.id ? h("a", { href: `#${slot.control.id}`, onclick: (e: Event) => { e.preventDefault(); slot.control.focus(); } }, f) : h("code", null, f);
              return h("li", null, link, ": ", t);
            }),
          )
        : h("p", null, p.unreachable ? "Slidelane cannot be reached; try again when the banner is gone." : `${p.message} (${p.code})`),
    );
    summary.hidden = false;
    if (unplaced.length && mode === "form") {
      summary.append(h("p", { class: "hint" }, "Some problems concern fields that are not on the form; the JSON tab shows the request as sent."));
    }
    if (focus) (first && mode === "form" ? first : mode === "json" ? jsonArea : summary).focus();
  }

  // ---------------------------------------------------------------- submit

  async function send(): Promise<void> {
    if (submitting) return;
    let request: CreateWorkflowRequest;
    try {
      request = mode === "form" ? requestFromForm() : requestFromJson();
    } catch (error) {
      if (error instanceof ClientFieldError) {
        showClientError(error);
        return;
      }
      throw error;
    }
    submitting = true;
    submit.disabled = true;
    form.setAttribute("aria-busy", "true");
    status.textContent = "Creating the workflow…";
    try {
      const reply = await workflows.createWorkflow(request, { signal });
      lastProblem = undefined;
      status.textContent = "Created.";
      window.location.hash = `#/workflows/${reply.workflow?.workflowId ?? ""}`;
    } catch (error) {
      if (signal.aborted) return;
      status.textContent = "";
      lastProblem = problem(error);
      if (mode === "json") {
        // keep the form in step, so its fields show the same errors
        loadRowsFrom(request);
        renderForm();
      }
      showProblem(lastProblem);
    } finally {
      submitting = false;
      submit.disabled = false;
      form.setAttribute("aria-busy", "false");
    }
  }

  renderForm();
  renderJsonPanel();
}

class ClientFieldError extends Error {
  constructor(
    readonly field: string,
    message: string,
  ) {
    super(message);
  }
}
