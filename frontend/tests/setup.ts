// jsdom lacks ResizeObserver (Svelte's bind:clientHeight uses it): a stand-in that never
// reports, so components see their initial size.
class ResizeObserverStub {
  observe() {}
  unobserve() {}
  disconnect() {}
}
globalThis.ResizeObserver ??= ResizeObserverStub as unknown as typeof ResizeObserver;
