// A hook that re-renders a component whenever its session says something changed.

import { useEffect, useState } from 'preact/hooks';
import type { Session } from '../session';

export function useSession(session: Session): void {
  const [, setVersion] = useState(0);
  useEffect(() => session.subscribe(() => setVersion((n) => n + 1)), [session]);
}
