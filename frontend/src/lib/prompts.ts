// Prompts as the dialog shows them: queued per app, and the answer built from the choices.

import type { PromptAnswer, PromptDuration, PromptInfo, PromptTarget } from "./protocol";

export interface PromptGroup {
  app: string;
  appName: string;
  prompts: PromptInfo[];
}

/** Groups waiting prompts per app, apps in the order their oldest prompt arrived. */
export function groupPrompts(prompts: PromptInfo[]): PromptGroup[] {
  const groups = new Map<string, PromptGroup>();
  const sorted = [...prompts].sort((a, b) => a.created_unix_ms - b.created_unix_ms || a.id - b.id);
  for (const p of sorted) {
    let g = groups.get(p.app);
    if (!g) {
      g = { app: p.app, appName: p.app_name, prompts: [] };
      groups.set(p.app, g);
    }
    g.prompts.push(p);
  }
  return [...groups.values()];
}

export type DurationChoice = PromptDuration["kind"];

export const TARGETS: { value: PromptTarget; label: string; needsDomain: boolean }[] = [
  { value: "ip_port", label: "This address and port", needsDomain: false },
  { value: "ip", label: "This address", needsDomain: false },
  { value: "port", label: "This port, any address", needsDomain: false },
  { value: "domain", label: "This domain", needsDomain: true },
  { value: "subdomains", label: "Domain and subdomains", needsDomain: true },
];

export const DURATIONS: { value: DurationChoice; label: string; key: string }[] = [
  { value: "once", label: "Once", key: "o" },
  { value: "minutes", label: "For minutes", key: "m" },
  { value: "until_app_quits", label: "Until app quits", key: "q" },
  { value: "until_restart", label: "Until restart", key: "r" },
  { value: "always", label: "Always", key: "f" },
];

export function buildAnswer(
  allow: boolean,
  target: PromptTarget,
  duration: DurationChoice,
  minutes: number,
): PromptAnswer {
  let d: PromptDuration;
  if (duration === "minutes") {
    const m = Math.min(10080, Math.max(1, Math.round(Number.isFinite(minutes) ? minutes : 10)));
    d = { kind: "minutes", minutes: m };
  } else {
    d = { kind: duration } as PromptDuration;
  }
  return { allow, target, duration: d };
}

/** A target that fits the prompt: domain targets need a domain. */
export function fitTarget(target: PromptTarget, p: PromptInfo): PromptTarget {
  const t = TARGETS.find((x) => x.value === target);
  return t && t.needsDomain && !p.domain ? "ip_port" : target;
}

export function secondsLeft(p: PromptInfo, now: number): number {
  return Math.max(0, Math.ceil((p.expires_unix_ms - now) / 1000));
}
