/** Entry point: renders the console into `#app`. */
import { render } from "preact";
import "./styles.css";
import { App } from "./ui/App.tsx";

const root = document.getElementById("app");
if (root) render(<App />, root);
