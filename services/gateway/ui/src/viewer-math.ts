// Deep Zoom geometry shared by the viewer (and its tests): 254 px tiles, 1 px overlap.
export const TILE_SIZE = 254;
export const TILE_OVERLAP = 1;

/** Deep Zoom's highest level for a slide: the level count is this + 1 (level 0 is 1x1 px). */
export function maxLevel(width: number, height: number): number {
  return Math.ceil(Math.log2(Math.max(width, height, 1)));
}
