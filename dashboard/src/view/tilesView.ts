import type { Tile } from '../model/tiles';
import { element } from './dom';

export function renderTiles(container: HTMLElement, tiles: Tile[]): void {
  container.replaceChildren(
    ...tiles.map((tile) =>
      element('article', { className: `tile tone-${tile.tone}`, attributes: { 'data-tile': tile.id } }, [
        element('h3', { className: 'tile-label', text: tile.label }),
        element('p', { className: 'tile-value', text: tile.value }),
        element('p', { className: 'tile-detail', text: tile.detail }),
      ]),
    ),
  );
}
