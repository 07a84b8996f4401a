// Entry point: picks the transport (browser mode today; the Tauri window will pass its own),
// starts the store and mounts the app.

import { mount } from "svelte";
import "./app.css";
import App from "./App.svelte";
import { Router } from "./lib/router.svelte";
import { Store } from "./lib/store.svelte";
import { HttpTransport } from "./lib/transport/http";

const store = new Store(new HttpTransport());
const router = new Router();
store.start();

const target = document.getElementById("app");
if (target) mount(App, { target, props: { store, router } });
