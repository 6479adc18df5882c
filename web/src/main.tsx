// Entry point of the web client: renders the app into the page `index.html` serves.

import { render } from 'preact';
import { App } from './ui/app';

render(<App />, document.getElementById('app')!);
