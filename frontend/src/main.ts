// Entry point: picks the transport (Tauri commands in the desktop window, HTTP in browser
// mode), starts the store and mounts the app, or only the prompt panel in the desktop app's
// prompt window (`#/prompt`).

import { mount } from "svelte";
import "./app.css";
import App from "./App.svelte";
import PromptWindow from "./PromptWindow.svelte";
import { Router } from "./lib/router.svelte";
import { Store } from "./lib/store.svelte";
import { HttpTransport } from "./lib/transport/http";
import { TauriTransport, tauriCore } from "./lib/transport/tauri";
import { startPerf } from "./lib/perf";

const core = tauriCore();
const store = new Store(core ? new TauriTransport(core) : new HttpTransport());
store.start();

const target = document.getElementById("app");
if (target) {
  if (core && window.location.hash === "#/prompt") mount(PromptWindow, { target, props: { store } });
  else {
    mount(App, { target, props: { store, router: new Router(), promptWindow: core !== null } });
    startPerf(core, () => store.connections.length);
  }
}
